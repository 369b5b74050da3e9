"""Real OpenAI-compatible HTTP servers for tests: uvicorn in a background thread on a free
loopback port, serving the default model through our TransformersLLM, or a tiny scripted
endpoint that misbehaves on purpose.

The model server implements POST /v1/chat/completions with ``n``, ``logprobs``, ``usage``
and ``response_format`` json_schema (the schema constrains TransformersLLM.propose). Greedy
when n == 1, sampled otherwise; ``temperature`` and ``max_tokens`` are the served model's
own settings. TransformersLLM reports a candidate's total logprob only, so each choice's
``logprobs.content`` is one entry holding the total, its token the whole text: a client
sums it right, and counts 1 token per choice."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from hybrid_agent.models.llm.transformers_backend import TransformersLLM


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on a free loopback port; yields the base URL, ending in /v1."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # Listening before uvicorn runs: a client that connects first waits in the backlog
    # instead of being refused, so nothing has to poll for the server to come up.
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


class _JsonSchema(BaseModel):
    name: str
    schema_: dict[str, Any] = Field(alias="schema")


class _ResponseFormat(BaseModel):
    type: str
    json_schema: _JsonSchema


class _ChatRequest(BaseModel):
    model: str
    messages: list[dict[str, str]]
    n: int = Field(default=1, ge=1)
    logprobs: bool = False
    response_format: _ResponseFormat


def model_app(llm: TransformersLLM) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def complete(request: _ChatRequest) -> dict[str, Any]:  # sync: FastAPI runs it in a thread
        proposal = llm.propose(request.messages, request.response_format.json_schema.schema_, request.n)
        choices = []
        for index, candidate in enumerate(proposal.candidates):
            cut_short = candidate.error is not None and candidate.error.startswith("cut short")
            entry = {"token": candidate.text, "logprob": candidate.logprob, "bytes": None, "top_logprobs": []}
            choices.append({
                "index": index,
                "message": {"role": "assistant", "content": candidate.text},
                "finish_reason": "length" if cut_short else "stop",
                "logprobs": {"content": [entry]} if request.logprobs else None,
            })
        generated = sum(candidate.tokens for candidate in proposal.candidates)
        usage = {"prompt_tokens": proposal.prompt_tokens, "completion_tokens": generated,
                 "total_tokens": proposal.prompt_tokens + generated}
        return {"object": "chat.completion", "model": request.model, "choices": choices, "usage": usage}

    return app


@dataclass
class Script:
    """A chat endpoint that answers with ``replies`` in turn (the last one again once they
    run out) and records each request's JSON body and headers."""

    replies: list[Response]
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> Response:
            self.requests.append({"body": await request.json(), "headers": dict(request.headers)})
            return self.replies[min(len(self.requests), len(self.replies)) - 1]

        return app


def completion(*contents: str, logprobs: list[float] | None = None, finish_reason: str = "stop",
               prompt_tokens: int = 10) -> JSONResponse:
    """A well-formed reply with one choice per content, each with ``logprobs`` per token."""
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish_reason,
            "logprobs": None if logprobs is None else {"content": [{"token": "t", "logprob": lp} for lp in logprobs]},
        }
        for index, content in enumerate(contents)
    ]
    return JSONResponse({"choices": choices, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1}})
