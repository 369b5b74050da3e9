"""A KV cache that appends in place.

transformers' ``DynamicLayer`` appends a token's keys and values with ``torch.cat``, which
copies the whole layer every time: with a few hundred prompt tokens that copy was 43% of
a decode step of the default model here (30 layers, twice each, per token). ``GrowingLayer``
keeps each layer in a buffer with room to spare, writes new positions into it and hands
out views of the filled part; the buffer is reallocated (doubling) only when full, so
appending costs the new tokens only. Cropping (a rejected draft, a branch) just shortens
the view. Everything else is ``DynamicLayer``'s: the values returned are the same numbers
in a strided view, which attention reads as they are."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedConfig
from transformers.cache_utils import DynamicLayer

SPARE_TOKENS = 256   # room a new buffer leaves beyond what it holds: a whole greedy call, usually


class GrowingLayer(DynamicLayer):
    """``DynamicLayer`` whose ``keys`` and ``values`` are views of the first positions of
    preallocated buffers (batch, heads, capacity, head_dim)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        held, new = self.get_seq_length(), key_states.shape[-2]
        if self._buffers is None or self._buffers[0].shape[-2] < held + new:
            self._grow(key_states, value_states, held=held, needed=held + new)
        keys, values = self._buffers   # type: ignore[misc]
        keys[..., held : held + new, :].copy_(key_states)
        values[..., held : held + new, :].copy_(value_states)
        self.keys, self.values = keys[..., : held + new, :], values[..., : held + new, :]
        return self.keys, self.values

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, *, held: int, needed: int) -> None:
        """New buffers for at least ``needed`` positions, holding the ``held`` cached now."""
        old = self._buffers[0].shape[-2] if self._buffers is not None else 0
        capacity = max(needed + SPARE_TOKENS, 2 * old)
        buffers = []
        for cached, states in ((self.keys, key_states), (self.values, value_states)):
            buffer = states.new_empty(*states.shape[:-2], capacity, states.shape[-1])
            if held:
                buffer[..., :held, :].copy_(cached)
            buffers.append(buffer)
        self._buffers = (buffers[0], buffers[1])

    # Both make new tensors of the cached part (more or fewer rows): the next update moves
    # them into new buffers.
    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._buffers = None

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._buffers = None

    def reset(self) -> None:
        super().reset()
        self._buffers = None


def growing_cache(config: PreTrainedConfig,
                  layers: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()) -> DynamicCache:
    """A ``DynamicCache`` for ``config``'s model whose full-attention layers are
    ``GrowingLayer``s (sliding-window ones stay as transformers makes them), holding a copy
    of ``layers`` (per-layer keys and values) when given."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    for layer, (keys, values) in zip(cache.layers, layers):
        layer.update(keys, values)
    return cache
