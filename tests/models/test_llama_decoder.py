"""The lean Llama forward pass: transformers' numbers for prefill, decoding, drafts after a
crop and batches, quantized or not, with the projections fused (and the originals dropped
from the model: its own forward then fails and says why); other models left alone."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from hybrid_agent.models.llm.kv_cache import growing_cache
from hybrid_agent.models.llm.llama_decoder import LlamaDecoder, unsupported
from hybrid_agent.models.llm.quantize import quantize

VOCAB = 300


def llama(**overrides: object) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, **overrides)
    return LlamaForCausalLM(config).eval()


def transformers_logits(model: LlamaForCausalLM, ids: torch.Tensor, cache, keep: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=keep).logits.float()


@pytest.mark.parametrize("kind", ["none", "fp16", "int8"])
@pytest.mark.parametrize("bias", [False, True])
def test_the_decoder_gives_the_models_logits_through_prefill_decoding_drafts_and_batches(kind: str,
                                                                                        bias: bool) -> None:
    model = llama(attention_bias=bias, mlp_bias=bias)
    decoder = LlamaDecoder(model)
    quantize(model, kind)
    quantize(decoder, kind)
    caches = (growing_cache(model.config), growing_cache(model.config))
    tolerance = {"rtol": 0, "atol": 1e-5 if kind == "none" else 1e-4}

    def both(ids: torch.Tensor, keep: int) -> None:
        with torch.inference_mode():
            ours = decoder(ids, caches[1], keep)
            theirs = transformers_logits(model, ids, caches[0], keep)
        assert ours.shape == theirs.shape == (ids.shape[0], keep, VOCAB)
        torch.testing.assert_close(ours, theirs, **tolerance)

    both(torch.randint(0, VOCAB, (1, 40)), keep=3)    # prefill
    both(torch.randint(0, VOCAB, (1, 1)), keep=1)     # one decoded token
    both(torch.randint(0, VOCAB, (1, 6)), keep=6)     # a draft checked in one pass
    for cache in caches:
        cache.crop(-4)                                  # most of it rejected
    both(torch.randint(0, VOCAB, (1, 1)), keep=1)
    for cache in caches:
        cache.batch_repeat_interleave(3)                # sampling K = 3
    for _ in range(3):
        both(torch.randint(0, VOCAB, (3, 1)), keep=1)
    assert caches[0].get_seq_length() == caches[1].get_seq_length() == 40 + 1 + 6 - 4 + 1 + 3


def test_only_the_fused_projections_are_the_decoders_own_weights() -> None:
    model = llama()
    decoder = LlamaDecoder(model)
    layer = model.model.layers[0]
    names = {name for name, _ in decoder.named_parameters()}
    assert names == {f"fused.{i}.{part}.weight" for i in range(2) for part in ("qkv", "gate_up")}
    attention = layer.self_attn
    q, k, v = decoder.fused[0].qkv.weight.split([attention.q_proj.out_features, attention.k_proj.out_features,
                                                 attention.v_proj.out_features])
    assert torch.equal(q, attention.q_proj.weight) and torch.equal(v, attention.v_proj.weight)
    assert torch.equal(k, attention.k_proj.weight)


@pytest.mark.parametrize("kind", ["none", "fp16"])
def test_with_the_originals_dropped_the_decoder_gives_the_same_logits_and_the_model_says_why_it_cannot_run(
        kind: str) -> None:
    whole, model = llama(), llama()
    decoder = LlamaDecoder(model)
    before = sum(p.numel() for p in model.parameters())
    decoder.drop_originals()
    projections = sum(f.qkv.weight.numel() + f.gate_up.weight.numel() for f in decoder.fused)
    assert sum(p.numel() for p in model.parameters()) == before - projections
    for part in (whole, model, decoder):
        quantize(part, kind)
    ids = torch.randint(0, VOCAB, (1, 12))
    with torch.inference_mode():
        theirs = transformers_logits(whole, ids, growing_cache(whole.config), 2)
        torch.testing.assert_close(decoder(ids, growing_cache(model.config), 2), theirs, rtol=0, atol=1e-4)
        with pytest.raises(RuntimeError, match="q_proj was fused into LlamaDecoder"):
            model(input_ids=ids)


def test_other_models_are_left_to_transformers_forward() -> None:
    mistral = MistralForCausalLM(MistralConfig(vocab_size=VOCAB, hidden_size=48, intermediate_size=96,
                                               num_hidden_layers=1, num_attention_heads=6, num_key_value_heads=2))
    assert "mistral" in (unsupported(mistral) or "")
    with pytest.raises(ValueError, match="cannot run this model: model type 'mistral'"):
        LlamaDecoder(mistral)
    assert "gelu" in (unsupported(llama(hidden_act="gelu")) or "")
    assert unsupported(llama()) is None
