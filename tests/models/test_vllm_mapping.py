"""The vllm backend without vLLM or a GPU: our request maps to vLLM's current parameters
(``structured_outputs``, never the removed ``guided_*`` fields; processed logprobs), its
outputs map back to candidates, and a machine without vLLM gets an LLMError saying so."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hybrid_agent.models.llm import LLMError, load_llm
from hybrid_agent.models.llm.vllm_backend import candidates_from, engine_kwargs, sampling_kwargs
from hybrid_agent.policies.tool_schema import call_schema

SCHEMA = call_schema()
CALL = '{"tool":"list_dir","args":{"path":"."}}'


@dataclass
class FakeCompletionOutput:
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    finish_reason: str | None = "stop"


@dataclass
class FakeRequestOutput:
    outputs: list[FakeCompletionOutput]
    prompt_token_ids: list[int] | None = field(default_factory=lambda: list(range(57)))


def test_one_candidate_is_one_greedy_sequence_under_the_schema() -> None:
    kwargs = sampling_kwargs(SCHEMA, 1, temperature=0.6, max_new_tokens=192, seed=3)
    assert kwargs == {
        "n": 1,
        "temperature": 0.0,
        "max_tokens": 192,
        "logprobs": 0,
        "seed": 3,
        "structured_outputs": {"json": SCHEMA},
    }


def test_k_candidates_are_k_sequences_sampled_at_the_temperature() -> None:
    kwargs = sampling_kwargs(SCHEMA, 4, temperature=0.6, max_new_tokens=None, seed=0)
    assert (kwargs["n"], kwargs["temperature"], kwargs["max_tokens"]) == (4, 0.6, None)
    assert kwargs["structured_outputs"] == {"json": SCHEMA}


def test_no_removed_guided_decoding_field_is_used() -> None:
    text = json.dumps(sampling_kwargs(SCHEMA, 2, temperature=0.6, max_new_tokens=64, seed=0)) + json.dumps(
        engine_kwargs("/models/coder", seed=0))
    assert "guided" not in text


def test_the_engine_reports_processed_logprobs() -> None:
    assert engine_kwargs("/models/coder", seed=9) == {
        "model": "/models/coder", "seed": 9, "logprobs_mode": "processed_logprobs"}


def test_zero_candidates_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        sampling_kwargs(SCHEMA, 0, temperature=0.6, max_new_tokens=None, seed=0)


def test_each_output_becomes_a_candidate_with_its_cumulative_logprob() -> None:
    output = FakeRequestOutput([FakeCompletionOutput(CALL, [1, 2, 3], -1.5),
                                FakeCompletionOutput(CALL, [4, 5], -0.5)])
    candidates, prompt_tokens = candidates_from(output)
    assert prompt_tokens == 57
    assert [(c.logprob, c.tokens, c.error) for c in candidates] == [(-1.5, 3, None), (-0.5, 2, None)]
    assert all(c.parsed == {"tool": "list_dir", "args": {"path": "."}} for c in candidates)


def test_an_output_ended_by_the_token_limit_is_cut_short_and_one_that_is_not_json_says_so() -> None:
    output = FakeRequestOutput([FakeCompletionOutput('{"tool":"li', [1, 2], -0.2, finish_reason="length"),
                                FakeCompletionOutput('{"tool":', [1], -0.1)])
    cut, broken = candidates_from(output)[0]
    assert cut.parsed is None and cut.error is not None and cut.error.startswith("cut short")
    assert broken.parsed is None and broken.error is not None and broken.error.startswith("not JSON")


def test_an_output_without_logprobs_has_an_unknown_logprob() -> None:
    [candidate], _ = candidates_from(FakeRequestOutput([FakeCompletionOutput(CALL, [1], None)]))
    assert math.isnan(candidate.logprob)


def test_without_vllm_installed_the_backend_is_an_llm_error_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` meets where it is absent
    with pytest.raises(LLMError, match="vLLM, which is not installed") as info:
        load_llm("vllm:/models/coder", cache_dir=Path("unused"))
    assert isinstance(info.value.__cause__, ImportError)
