"""The KV cache that appends in place: it holds what transformers' own cache holds through
every operation decoding uses, the model computes the same logits with it, and appending
within its room writes into the same buffer instead of copying the layer."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import DynamicLayer

from hybrid_agent.models.llm.kv_cache import SPARE_TOKENS, GrowingLayer, growing_cache

HEADS, HEAD_DIM = 3, 8


def states(tokens: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, HEADS, tokens, HEAD_DIM), torch.randn(batch, HEADS, tokens, HEAD_DIM)


def assert_same(growing: GrowingLayer, reference: DynamicLayer) -> None:
    assert growing.get_seq_length() == reference.get_seq_length()
    assert torch.equal(growing.keys, reference.keys)
    assert torch.equal(growing.values, reference.values)


def test_the_layer_holds_what_transformers_layer_holds_through_appends_crops_and_batch_changes() -> None:
    torch.manual_seed(0)
    growing, reference = GrowingLayer(), DynamicLayer()

    def both(operation: str, *args: object) -> None:
        for layer in (growing, reference):
            getattr(layer, operation)(*args)
        assert_same(growing, reference)

    both("update", *states(40))                      # a prompt
    for _ in range(5):
        both("update", *states(1))                   # decoded tokens
    both("update", *states(9))                       # a draft checked in one pass
    both("crop", -6)                                 # its rejected tail
    both("update", *states(SPARE_TOKENS + 50))       # past the room: the buffer grows
    both("batch_repeat_interleave", 3)               # K candidates from one prompt
    both("update", *states(1, batch=3))
    both("batch_select_indices", torch.tensor([0, 2]))   # a finished one leaves the batch
    both("update", *states(2, batch=2))


def test_appending_within_the_room_writes_into_the_same_buffer() -> None:
    layer = GrowingLayer()
    layer.update(*states(100))
    start = layer.keys.data_ptr()
    for _ in range(SPARE_TOKENS):
        keys, _ = layer.update(*states(1))
        assert keys.data_ptr() == start   # a view of the buffer, not a new tensor
    layer.update(*states(1))
    assert layer.keys.data_ptr() != start   # full: moved into a larger one
    assert layer.get_seq_length() == 100 + SPARE_TOKENS + 1


def test_a_copied_cache_does_not_share_the_layers_it_was_made_from() -> None:
    keys, values = states(10)
    cache = growing_cache(llama_config(), [(keys, values)])
    original = keys.clone()
    cache.layers[0].update(*states(1))
    cache.crop(-4)
    cache.layers[0].update(*states(3))   # positions 7-9 rewritten
    assert not torch.equal(cache.layers[0].keys, original)
    assert torch.equal(keys, original)


def llama_config() -> LlamaConfig:
    return LlamaConfig(vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=6, num_key_value_heads=HEADS)


@pytest.mark.parametrize("draft", [1, 8])
def test_the_model_computes_the_same_logits_with_either_cache(draft: int) -> None:
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config()).eval()
    prompt = torch.randint(0, 300, (1, 30))
    caches = (DynamicCache(config=model.config), growing_cache(model.config))
    with torch.inference_mode():
        logits = [model(input_ids=prompt, cache=cache, use_cache=True).logits for cache in caches]
        assert torch.equal(*logits)
        for step in range(4):
            ids = torch.randint(0, 300, (1, draft))
            logits = [model(input_ids=ids, cache=cache, use_cache=True).logits for cache in caches]
            torch.testing.assert_close(*logits, rtol=0, atol=1e-6)
            for cache in caches:
                cache.crop(-(draft // 2))   # part of each draft rejected
        assert all(cache.get_seq_length() == 30 + 4 * (draft - draft // 2) for cache in caches)
