"""The `openai` backend: any OpenAI-compatible chat completions endpoint (a vLLM server, the
llama.cpp server, Ollama), asked for K choices with logprobs, decoded under the call's JSON
schema by the server's structured output.

``Candidate.logprob`` is the sum of the per-token logprobs the server returns (a vLLM
server reports them as its ``--logprobs-mode`` says). A server that returns none gives
``nan`` and 0 tokens: unknown, not certain (0.0 would rank first); ranking by mean logprob
then keeps the server's order, and the journal records null. A server that ignores ``n``
(Ollama does) gives fewer than K candidates, which the caller sees, rather than an error."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .base import Candidate, LLMError, Proposal, new_candidates

MAX_RETRY_AFTER_S = 30.0  # a server asking for a longer pause is better reported than waited on
# Failures before the server has the request, or that it drops unanswered: safe to resend.
# A read timeout is not among them: a generation that outlasted the timeout once would again.
_RESENDABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


class _Wire(BaseModel):
    # Strict: a number sent as a string is a malformed response, not something to coerce.
    model_config = ConfigDict(strict=True)


class _TokenLogprob(_Wire):
    logprob: float


class _Logprobs(_Wire):
    content: list[_TokenLogprob] | None = None


class _Message(_Wire):
    content: str


class _Choice(_Wire):
    message: _Message
    finish_reason: str | None = None
    logprobs: _Logprobs | None = None


class _Usage(_Wire):
    prompt_tokens: int


class _Completion(_Wire):
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None  # some servers omit it: prompt_tokens is then 0


def parse_candidate(text: str, logprob: float, tokens: int, *, cut_short: bool) -> Candidate:
    """A candidate from a server's generated text; ``cut_short`` when the token limit ended it."""
    if cut_short:
        error = f"cut short: max_tokens ({tokens}) ran out before the call was complete"
        return Candidate(text=text, parsed=None, logprob=logprob, tokens=tokens, error=error)
    try:
        # strict=False: grammars let raw control characters such as tabs into strings,
        # which strict json.loads rejects.
        parsed = json.loads(text, strict=False)
    except ValueError as exc:
        return Candidate(text=text, parsed=None, logprob=logprob, tokens=tokens, error=f"not JSON: {exc}")
    return Candidate(text=text, parsed=parsed, logprob=logprob, tokens=tokens)


def _candidate(choice: _Choice) -> Candidate:
    entries = choice.logprobs.content if choice.logprobs else None
    logprob = math.nan if entries is None else math.fsum(entry.logprob for entry in entries)
    tokens = 0 if entries is None else len(entries)
    return parse_candidate(choice.message.content, logprob, tokens, cut_short=choice.finish_reason == "length")


class OpenAILLM:
    """Chat completions at ``base_url`` (ending in ``/v1``) from ``model``: greedy when
    K == 1, sampled at ``temperature`` otherwise. Connection failures, 429 and 5xx are
    retried ``retries`` times with exponential backoff (or the server's Retry-After); any
    other failure, a timeout included, is an LLMError at once."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        seed: int = 0,
        temperature: float = 0.6,
        max_new_tokens: int | None = None,
        timeout_s: float = 60.0,
        retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        self.name = f"openai:{base_url}#{model}"
        self.model = model
        self.seed = seed
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens  # None: the server's default
        self.retries = retries
        self.backoff_s = backoff_s
        self._url = base_url.rstrip("/") + "/chat/completions"
        # The key lives only in the client's headers: no attribute, name or message holds it.
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    def request_body(self, messages: list[dict[str, str]], schema: dict[str, Any], k: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "n": k,
            "temperature": 0.0 if k == 1 else self.temperature,
            "seed": self.seed,
            "logprobs": True,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "tool_call", "schema": schema, "strict": True},
            },
        }
        if self.max_new_tokens is not None:
            body["max_tokens"] = self.max_new_tokens
        return body

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any], k: int, *,
                exclude: Sequence[str] = ()) -> Proposal:
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        started = time.perf_counter()
        # One sample more per excluded call (sampled, not greedy, when more than one).
        response, attempts = self._post(self.request_body(messages, schema, k + len(exclude)))
        try:
            completion = _Completion.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise LLMError(f"{self.name}: malformed response ({where}: {first['msg']})") from exc
        candidates = new_candidates([_candidate(choice) for choice in completion.choices], exclude, k)
        prompt_tokens = completion.usage.prompt_tokens if completion.usage else 0
        return Proposal(candidates=candidates, prompt_tokens=prompt_tokens,
                        seconds=time.perf_counter() - started, info={"attempts": attempts})

    def _post(self, body: dict[str, Any]) -> tuple[httpx.Response, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.post(self._url, json=body)
            except _RESENDABLE as exc:
                if attempt > self.retries:
                    raise LLMError(f"{self.name}: no answer after {attempt} attempts: {exc!r}") from exc
                time.sleep(self._delay(attempt, None))
                continue
            except httpx.HTTPError as exc:
                raise LLMError(f"{self.name}: request failed: {exc!r}") from exc
            if response.is_success:
                return response, attempt
            status = response.status_code
            if not (status == 429 or status >= 500) or attempt > self.retries:
                raise LLMError(f"{self.name}: HTTP {status} after {attempt} attempt(s): {response.text[:300]}")
            time.sleep(self._delay(attempt, response.headers.get("retry-after")))

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        backoff = self.backoff_s * 2 ** (attempt - 1)
        try:
            return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_S) if retry_after else backoff
        except ValueError:  # Retry-After as an HTTP date: back off as usual
            return backoff
