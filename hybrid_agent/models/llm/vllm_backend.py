"""The `vllm` backend: in-process vLLM on a GPU machine. vLLM is never a dependency of this
package (it brings its own CUDA build of torch): it is imported when the backend loads.

The mapping from our request to vLLM's parameters is pure and returns plain dicts, so it is
tested without vLLM or a GPU. Checked against vLLM's own source and docs:
- vllm/sampling_params.py (vllm-project/vllm main): structured output is the field
  ``SamplingParams.structured_outputs: StructuredOutputsParams | None``, with
  ``StructuredOutputsParams(json=schema)``; docs.vllm.ai/en/latest/features/structured_outputs
  says ``guided_json`` and the other ``guided_*`` fields were removed in v0.12.0.
  ``logprobs=0`` returns the sampled token's logprob only, which is all
  ``CompletionOutput.cumulative_logprob`` needs; temperature 0 (greedy) requires n == 1.
- vllm/config/model.py and vllm/engine/arg_utils.py: ``logprobs_mode`` is an engine argument
  (ModelConfig/EngineArgs, not a SamplingParams field): ``raw_logprobs`` (default),
  ``raw_logits``, ``processed_logprobs``, ``processed_logits``.
Processed logprobs score a candidate under the distribution it was drawn from. In the V1
engine the grammar bitmask is applied to the logits before the sampler, so raw logprobs are
already renormalized over the tokens the schema allows (at temperature 1, as the
transformers backend reports them); processed ones add the temperature, so sampled (K > 1)
and greedy candidates are on different scales. Candidates of one call compare either way."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from .base import Candidate, LLMError, Proposal, new_candidates
from .openai_backend import parse_candidate

LOGPROBS_MODE = "processed_logprobs"


class CompletionLike(Protocol):
    """What we read of vLLM's ``CompletionOutput``."""

    text: str
    token_ids: Sequence[int]
    cumulative_logprob: float | None
    finish_reason: str | None


class RequestOutputLike(Protocol):
    """What we read of vLLM's ``RequestOutput``."""

    prompt_token_ids: list[int] | None
    outputs: Sequence[CompletionLike]


def engine_kwargs(model: str, *, seed: int) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for ``model`` (a local directory or a model name)."""
    return {"model": model, "seed": seed, "logprobs_mode": LOGPROBS_MODE}


def sampling_kwargs(
    schema: dict[str, Any], k: int, *, temperature: float, max_new_tokens: int | None, seed: int
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for K candidates under ``schema``, with
    ``structured_outputs`` as the keyword arguments of ``StructuredOutputsParams``."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    return {
        "n": k,
        "temperature": 0.0 if k == 1 else temperature,
        "max_tokens": max_new_tokens,  # None: the rest of the context window
        "logprobs": 0,
        "seed": seed,
        "structured_outputs": {"json": schema},
    }


def candidates_from(output: RequestOutputLike) -> tuple[list[Candidate], int]:
    """The candidates of one request's output and its prompt length in tokens."""
    candidates = []
    for completion in output.outputs:
        # None when logprobs were not requested: unknown, as the openai backend reports it.
        total = completion.cumulative_logprob
        logprob = math.nan if total is None else total
        candidates.append(parse_candidate(completion.text, logprob, len(completion.token_ids),
                                          cut_short=completion.finish_reason == "length"))
    return candidates, len(output.prompt_token_ids or [])


class VLLMBackend:
    """A model run in this process by vLLM: greedy when K == 1, sampled otherwise."""

    def __init__(self, model: str, *, seed: int = 0, temperature: float = 0.6,
                 max_new_tokens: int | None = None) -> None:
        try:
            import vllm
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError as exc:
            raise LLMError("the vllm backend needs vLLM, which is not installed "
                           "(an optional install for GPU machines: pip install vllm)") from exc
        self.name = f"vllm:{model}"
        self.seed = seed
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self._sampling_params = vllm.SamplingParams
        self._structured_outputs = StructuredOutputsParams
        self._lock = threading.Lock()  # vllm.LLM serves one caller at a time
        try:
            self._engine = vllm.LLM(**engine_kwargs(model, seed=seed))
        except Exception as exc:
            raise LLMError(f"cannot load {model} with vLLM: {exc}") from exc

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any], k: int, *,
                exclude: Sequence[str] = ()) -> Proposal:
        # One sample more per excluded call (sampled, not greedy, when more than one).
        kwargs = sampling_kwargs(schema, k + len(exclude), temperature=self.temperature,
                                 max_new_tokens=self.max_new_tokens, seed=self.seed)
        with self._lock:
            started = time.perf_counter()
            try:
                params = self._sampling_params(
                    **{**kwargs, "structured_outputs": self._structured_outputs(**kwargs["structured_outputs"])}
                )
                [output] = self._engine.chat(messages, params, use_tqdm=False)
            except Exception as exc:
                raise LLMError(f"{self.name}: generation failed: {exc}") from exc
            seconds = time.perf_counter() - started
        candidates, prompt_tokens = candidates_from(output)
        return Proposal(candidates=new_candidates(candidates, exclude, k), prompt_tokens=prompt_tokens, seconds=seconds)
