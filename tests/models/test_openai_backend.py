"""The openai backend against real HTTP servers: the default model served in the OpenAI
chat completions API, and tiny scripted endpoints that fail in each way a server can.
Failures become LLMError (what the agent loop handles); only connection failures, 429 and
5xx are retried."""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from hybrid_agent.models.llm import SPEC_FORMS, LLMError, Proposal, load_llm
from hybrid_agent.models.llm.openai_backend import OpenAILLM
from hybrid_agent.models.llm.transformers_backend import TransformersLLM
from hybrid_agent.policies.tool_schema import call_schema, validate_call

from .openai_server import Script, completion, model_app, serve

CACHE = Path(__file__).parents[2] / ".cache" / "models"  # as test_llm.py: converted once per checkout
BOUNDED = frozenset({"read_file", "list_dir", "finish"})  # every string bounded: no call is cut short
SCHEMA = call_schema(BOUNDED)
MESSAGES = [
    {"role": "system", "content": 'Answer with one tool call as JSON: {"tool": NAME, "args": {...}}. '
                                  "Tools: read_file {path}, list_dir {path}, finish {summary, success}."},
    {"role": "user", "content": "List the files in the workspace."},
]
CALL = '{"tool":"list_dir","args":{"path":"."}}'


def quick(url: str, **kwargs: object) -> OpenAILLM:
    """A client that retries without waiting: these tests are about what, not when."""
    return OpenAILLM(url, "m", **{"backoff_s": 0.0, **kwargs})  # type: ignore[arg-type]


# --- the spec -------------------------------------------------------------------------


def test_an_openai_spec_names_the_url_and_the_model() -> None:
    llm = load_llm("openai:http://127.0.0.1:8000/v1#smollm2", cache_dir=CACHE)
    assert isinstance(llm, OpenAILLM)
    assert llm.name == "openai:http://127.0.0.1:8000/v1#smollm2" and llm.model == "smollm2"


@pytest.mark.parametrize("spec", ["openai:http://127.0.0.1:8000/v1", "openai:http://x#", "openai:ftp://x#m",
                                  "openai:", "vllm:", "llama:model.gguf"])
def test_a_malformed_or_unknown_spec_is_a_value_error_listing_every_form(spec: str) -> None:
    with pytest.raises(ValueError) as info:
        load_llm(spec, cache_dir=CACHE)
    for form in SPEC_FORMS:
        assert form in str(info.value)


# --- the real default model, served -----------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> TransformersLLM:
    # Budget sized from the schema (max_new_tokens None): a bounded call always completes.
    return TransformersLLM.default(CACHE, seed=7)


@pytest.fixture(scope="module")
def served(smollm2: TransformersLLM) -> Iterator[str]:
    with serve(model_app(smollm2)) as url:
        yield url


def check_valid(proposal: Proposal, k: int, smollm2: TransformersLLM) -> None:
    assert len(proposal.candidates) == k
    for candidate in proposal.candidates:
        assert candidate.error is None, candidate.text
        validate_call(candidate.parsed, tools=BOUNDED)
        assert math.isfinite(candidate.logprob) and candidate.logprob < 0
    prompt = smollm2.tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=True)
    assert proposal.prompt_tokens == len(prompt["input_ids"])


@pytest.mark.llm
def test_one_candidate_through_the_server_is_the_models_own_greedy_call(served: str, smollm2: TransformersLLM) -> None:
    proposal = load_llm(f"openai:{served}#smollm2", cache_dir=CACHE, timeout_s=300).propose(MESSAGES, SCHEMA, 1)
    check_valid(proposal, 1, smollm2)
    [remote], [local] = proposal.candidates, smollm2.propose(MESSAGES, SCHEMA, 1).candidates
    assert (remote.text, remote.parsed, remote.logprob) == (local.text, local.parsed, local.logprob)


@pytest.mark.llm
def test_three_sampled_candidates_through_the_server_are_valid(served: str, smollm2: TransformersLLM) -> None:
    proposal = load_llm(f"openai:{served}#smollm2", cache_dir=CACHE, timeout_s=300).propose(MESSAGES, SCHEMA, 3)
    check_valid(proposal, 3, smollm2)


# --- what the client asks for and makes of the answer ----------------------------------


def test_the_request_asks_for_k_choices_with_logprobs_under_the_schema() -> None:
    script = Script([completion(CALL, CALL, CALL)])
    with serve(script.app()) as url:
        quick(url, api_key="sk-secret", seed=5, temperature=0.7, max_new_tokens=64).propose(MESSAGES, SCHEMA, 3)
    [request] = script.requests
    assert request["body"] == {
        "model": "m",
        "messages": MESSAGES,
        "n": 3,
        "temperature": 0.7,
        "seed": 5,
        "logprobs": True,
        "max_tokens": 64,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "tool_call", "schema": SCHEMA, "strict": True}},
    }
    assert request["headers"]["authorization"] == "Bearer sk-secret"


def test_one_candidate_is_greedy_and_no_token_cap_leaves_the_servers_default() -> None:
    script = Script([completion(CALL)])
    with serve(script.app()) as url:
        quick(url, temperature=0.7).propose(MESSAGES, SCHEMA, 1)
    body = script.requests[0]["body"]
    assert body["n"] == 1 and body["temperature"] == 0.0 and "max_tokens" not in body
    assert "authorization" not in script.requests[0]["headers"]


def test_a_candidates_logprob_is_the_sum_over_its_tokens() -> None:
    script = Script([completion(CALL, CALL, logprobs=[-0.5, -0.25, 0.0], prompt_tokens=42)])
    with serve(script.app()) as url:
        proposal = quick(url).propose(MESSAGES, SCHEMA, 2)
    assert proposal.prompt_tokens == 42
    for candidate in proposal.candidates:
        assert (candidate.logprob, candidate.tokens) == (-0.75, 3)
        assert candidate.parsed == {"tool": "list_dir", "args": {"path": "."}} and candidate.error is None


def test_without_logprobs_a_candidates_logprob_is_unknown_not_certain() -> None:
    script = Script([completion(CALL, logprobs=None)])
    with serve(script.app()) as url:
        [candidate] = quick(url).propose(MESSAGES, SCHEMA, 1).candidates
    assert math.isnan(candidate.logprob) and candidate.tokens == 0
    assert candidate.parsed is not None


def test_a_choice_that_hit_the_token_limit_is_cut_short_and_one_that_is_not_json_says_so() -> None:
    script = Script([completion('{"tool":"list_dir","ar', logprobs=[-0.1] * 4, finish_reason="length"),
                     completion('{"tool":', logprobs=[-0.1])])
    with serve(script.app()) as url:
        llm = quick(url)
        [cut] = llm.propose(MESSAGES, SCHEMA, 1).candidates
        [broken] = llm.propose(MESSAGES, SCHEMA, 1).candidates
    assert cut.parsed is None and cut.error is not None and cut.error.startswith("cut short")
    assert broken.parsed is None and broken.error is not None and broken.error.startswith("not JSON")


def test_a_server_that_ignores_n_gives_fewer_candidates_not_an_error() -> None:
    script = Script([completion(CALL, logprobs=[-0.1])])
    with serve(script.app()) as url:
        proposal = quick(url).propose(MESSAGES, SCHEMA, 4)
    assert len(proposal.candidates) == 1


def test_excluded_calls_are_asked_for_one_more_sample_each_and_dropped() -> None:
    other = '{"tool":"read_file","args":{"path":"a.txt"}}'
    script = Script([completion(CALL, other, logprobs=[-0.1])])
    with serve(script.app()) as url:
        proposal = quick(url, temperature=0.7).propose(MESSAGES, SCHEMA, 1, exclude=[CALL])
    body = script.requests[0]["body"]
    assert body["n"] == 2 and body["temperature"] == 0.7   # sampled: greedy would repeat the excluded call
    assert [c.text for c in proposal.candidates] == [other]


# --- failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_transient_server_error_is_retried(status: int) -> None:
    script = Script([JSONResponse({"error": "busy"}, status_code=status), completion(CALL, logprobs=[-0.1])])
    with serve(script.app()) as url:
        proposal = quick(url).propose(MESSAGES, SCHEMA, 1)
    assert len(script.requests) == 2 and proposal.info["attempts"] == 2
    assert proposal.candidates[0].parsed is not None


def test_retry_after_is_honoured_on_429() -> None:
    script = Script([JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "0"}),
                     completion(CALL)])
    with serve(script.app()) as url:
        # A backoff of an hour would hang the test: the server's 0 s must win.
        proposal = OpenAILLM(url, "m", backoff_s=3600).propose(MESSAGES, SCHEMA, 1)
    assert proposal.info["attempts"] == 2


def test_a_server_error_that_persists_is_an_llm_error_after_the_retries() -> None:
    script = Script([JSONResponse({"error": "down"}, status_code=500)])
    with serve(script.app()) as url, pytest.raises(LLMError, match="HTTP 500 after 3 attempt"):
        quick(url, retries=2).propose(MESSAGES, SCHEMA, 1)
    assert len(script.requests) == 3


def test_a_client_error_is_an_llm_error_at_once_with_the_servers_message() -> None:
    script = Script([JSONResponse({"error": {"message": "unknown model m"}}, status_code=400)])
    with serve(script.app()) as url, pytest.raises(LLMError, match="HTTP 400.*unknown model m"):
        quick(url, api_key="sk-secret").propose(MESSAGES, SCHEMA, 1)
    assert len(script.requests) == 1


@pytest.mark.parametrize("reply", [
    Response(b"<html>gateway</html>", media_type="text/html"),
    JSONResponse({"id": "chatcmpl-1"}),
    JSONResponse({"choices": []}),
    JSONResponse({"choices": [{"message": {"content": 5}}]}),
    JSONResponse({"choices": [{"message": {"content": CALL}, "logprobs": {"content": [{"logprob": "-0.1"}]}}]}),
    JSONResponse({"choices": [{"message": {"content": CALL}}], "usage": {"prompt_tokens": "12"}}),
], ids=["not-json", "no-choices", "empty-choices", "content-not-text", "logprob-not-number", "usage-not-number"])
def test_a_malformed_response_is_an_llm_error_and_not_retried(reply: Response) -> None:
    script = Script([reply])
    with serve(script.app()) as url, pytest.raises(LLMError, match="malformed response"):
        quick(url).propose(MESSAGES, SCHEMA, 1)
    assert len(script.requests) == 1


def test_a_server_that_does_not_answer_in_time_is_an_llm_error_and_not_retried() -> None:
    release, hits = threading.Event(), []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def hang() -> dict[str, str]:
        hits.append(1)
        release.wait()
        return {}

    with serve(app) as url:
        try:
            with pytest.raises(LLMError, match="ReadTimeout") as info:
                quick(url, timeout_s=0.5).propose(MESSAGES, SCHEMA, 1)
        finally:
            release.set()  # lets the server finish the request and shut down
    assert hits == [1]
    assert info.value.__cause__ is not None


def test_a_server_that_is_not_there_is_an_llm_error_after_the_retries() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LLMError, match="no answer after 3 attempts") as info:
        quick(f"http://127.0.0.1:{port}/v1", retries=2).propose(MESSAGES, SCHEMA, 1)
    assert info.value.__cause__ is not None


def test_the_api_key_appears_in_no_name_repr_or_error() -> None:
    script = Script([JSONResponse({"error": "bad request"}, status_code=400)])
    with serve(script.app()) as url:
        llm = quick(url, api_key="sk-secret")
        with pytest.raises(LLMError) as info:
            llm.propose(MESSAGES, SCHEMA, 1)
    public = {name: value for name, value in vars(llm).items() if not name.startswith("_")}
    assert "sk-secret" not in " ".join([llm.name, repr(llm), repr(public), str(info.value)])
