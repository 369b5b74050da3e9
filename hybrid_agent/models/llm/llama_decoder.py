"""A lean forward pass of Llama-family models, for decoding a few tokens at a time on a CPU.

transformers' forward is general: every call builds masks and output records, and every
layer goes through hooks, keyword plumbing and the attention registry. For the one-token
passes of decoding that machinery is a good part of the time on a CPU, as are the seven
matrix products of each layer, each a call into the kernel library with its own fixed
cost. ``LlamaDecoder`` runs the same modules in plain code and fuses the projections that
read the same input: q, k and v into one linear, gate and up into another, four products a
layer instead of seven. The default model in fp16 at a 400-token context, on a 2-core
AVX2 machine: 65 -> 52 ms a token, 78 -> 64 ms for a batch of four
(``benchmarks/decode_forward.py``).

The numbers are transformers' own: its embedding, rotary embedding, norms, o and down
projections and head are used as they are (quantized with the model), attention is SDPA
as in its default, and the fused weights are the originals' rows. ``drop_originals`` then
takes the separate q, k, v, gate and up projections out of the transformers model (140 MB
in fp16 for the default model), after which only the decoder runs it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, PreTrainedModel
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

SUPPORTED_TYPES = ("llama",)
ATTENTION = ("sdpa", "eager")   # transformers' implementations whose numbers SDPA reproduces
# (a decoder layer's submodule, projection) that the fused linears replace
FUSED_AWAY = (("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("mlp", "gate_proj"),
              ("mlp", "up_proj"))


def unsupported(model: PreTrainedModel) -> str | None:
    """Why ``LlamaDecoder`` cannot run ``model`` (then transformers' forward does), or None."""
    config = model.config
    if config.model_type not in SUPPORTED_TYPES:
        return f"model type {config.model_type!r} is not one of {', '.join(SUPPORTED_TYPES)}"
    if config._attn_implementation not in ATTENTION:
        return f"attention implementation {config._attn_implementation!r} is not one of {', '.join(ATTENTION)}"
    if config.hidden_act != "silu":
        return f"activation {config.hidden_act!r} is not silu"
    return None


def _concat(*linears: nn.Linear) -> nn.Linear:
    """One linear computing ``linears`` side by side (their outputs concatenated)."""
    fused = nn.Linear(linears[0].in_features, sum(linear.out_features for linear in linears),
                      bias=linears[0].bias is not None)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([linear.weight for linear in linears]))
        if fused.bias is not None:
            fused.bias.copy_(torch.cat([linear.bias for linear in linears]))
    return fused.requires_grad_(False)


class FusedProjections(nn.Module):
    """A decoder layer's q|k|v and gate|up projections."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        attention, mlp = layer.self_attn, layer.mlp
        self.qkv = _concat(attention.q_proj, attention.k_proj, attention.v_proj)
        self.gate_up = _concat(mlp.gate_proj, mlp.up_proj)


class FusedAway(nn.Module):
    """Where a projection was before ``LlamaDecoder.drop_originals`` fused it away."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"{self.name} was fused into LlamaDecoder's projections: this model runs through "
                           "the decoder only (load another copy for transformers' own forward or generate)")


class LlamaDecoder(nn.Module):
    """``forward(input_ids, cache, keep)``: the logits of the last ``keep`` positions, the
    new positions' keys and values appended to ``cache``, as the model's own forward with
    ``logits_to_keep=keep`` gives them. Build it from the float model (before quantizing),
    then quantize it as the model: only the fused projections are its own parameters."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        if reason := unsupported(model):
            raise ValueError(f"LlamaDecoder cannot run this model: {reason}")
        config, attention = model.config, model.model.layers[0].self_attn
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim, self.scaling = attention.head_dim, attention.scaling
        self.intermediate = config.intermediate_size
        self.fused = nn.ModuleList(FusedProjections(layer) for layer in model.model.layers)
        self._model = (model,)   # not a submodule: its modules are quantized with it, not here

    def drop_originals(self) -> None:
        """Take the model's q, k, v, gate and up projections out (the fused ones hold their
        rows): the memory they held is freed, and the model's own forward fails, saying why."""
        for layer in self._model[0].model.layers:
            for part, name in FUSED_AWAY:
                setattr(getattr(layer, part), name, FusedAway(name))

    def forward(self, input_ids: torch.Tensor, cache: DynamicCache, keep: int = 1) -> torch.Tensor:
        model = self._model[0]
        batch, n = input_ids.shape
        past = cache.get_seq_length()
        x = model.model.embed_tokens(input_ids)                                     # (batch, n, hidden)
        cos, sin = model.model.rotary_emb(x, torch.arange(past, past + n)[None])   # (1, n, head_dim)
        # Position i sees the cache, itself and the new ones before it; a single one sees all.
        mask = None if n == 1 else torch.ones(n, past + n, dtype=torch.bool).tril(past)   # (n, past + n)
        for layer, fused, cached in zip(model.model.layers, self.fused, cache.layers):
            h = layer.input_layernorm(x)
            q, k, v = fused.qkv(h).split([self.heads * self.head_dim, *[self.kv_heads * self.head_dim] * 2], dim=-1)
            q = q.view(batch, n, self.heads, self.head_dim).transpose(1, 2)          # (batch, heads, n, head_dim)
            k = k.view(batch, n, self.kv_heads, self.head_dim).transpose(1, 2)       # (batch, kv_heads, n, head_dim)
            v = v.view(batch, n, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k, v = cached.update(k, v)                                               # (batch, kv_heads, past + n, .)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling, enable_gqa=True)
            x = x + layer.self_attn.o_proj(out.transpose(1, 2).reshape(batch, n, -1))
            gate, up = fused.gate_up(layer.post_attention_layernorm(x)).split(self.intermediate, dim=-1)
            x = x + layer.mlp.down_proj(F.silu(gate) * up)
        return model.lm_head(model.model.norm(x[:, -keep:])).float()               # (batch, keep, vocab)
