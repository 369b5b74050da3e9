"""Smaller weights for CPU decoding (``HA_LLM_QUANTIZE``: none, fp16, int8).

Decoding one token reads every weight once, so on a CPU it is bound by memory traffic, not
arithmetic: the default model's float32 weights are 540 MB a token.

- ``fp16``: the linear layers' weights in float16, multiplied in float32 by fbgemm
  (``quantize_dynamic`` to float16): half the bytes, and float32's choices but for near
  ties (only the weights are rounded, once; the default model's logits move by 0.04 at most
  on a 321-token prompt).
- ``int8``: ``Int8Linear``, weights in int8 with a scale per output channel, multiplied by
  fbgemm's int8 kernels: a quarter of the bytes, and prefill faster too. The activations
  are rounded to 8 bits at every layer, so the model's choices move a little, and a choice
  near a tie can flip with float32 noise elsewhere (a prompt prefilled in one pass or two,
  a draft checked with the tokens after it): the same calls in the same order give the
  same answers, but cached and uncached runs may differ where float32 would not.

fbgemm rounds the activations with one scale for the whole input, so a token's result
would depend on the other tokens of the same pass. ``Int8Linear`` first divides each
token's activations by their largest magnitude and adds two constant columns (+1, -1,
against zero weights) that pin every row's range to [-1, 1]: the shared scale is then the
same for every token, each is rounded on its own scale, and the product is multiplied
back. Embeddings and norms stay float32; a LoRA adapter is merged before quantizing."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

QUANTIZATIONS = ("none", "fp16", "int8")
EDGE_COLUMNS = 2   # the +1 and -1 that fix every row's range


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    # torch.ao's quantization is deprecated in favour of torchao and says so on every use;
    # torch is pinned (2.13), where it works and fbgemm is the fastest path on this CPU.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        yield


class RowScaler:
    """Each token's activations over their largest magnitude, with the +1 / -1 columns:
    what every ``Int8Linear`` of a model multiplies. Shared by the layers of one model
    because q, k and v (and gate and up) read the same input: worked out once for them."""

    def __init__(self) -> None:
        self.last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.edges = torch.tensor([1.0, -1.0])

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The same object, held here so it cannot be another tensor at a reused address;
        # the model's forward does not modify a layer's input in place.
        if self.last is not None and self.last[0] is x:
            return self.last[1], self.last[2]
        scale = torch.linalg.vector_norm(x, float("inf"), dim=-1, keepdim=True).clamp_min_(1e-30)   # (..., 1)
        edges = self.edges.expand(*x.shape[:-1], EDGE_COLUMNS)                           # a view
        rows = torch.cat([x / scale, edges], dim=-1)                                  # (..., in + 2) in [-1, 1]
        self.last = (x, rows, scale)
        return rows, scale


class Int8Linear(nn.Module):
    """``linear``'s weight as int8 (symmetric, a scale per output channel)."""

    def __init__(self, linear: nn.Linear, rows: RowScaler | None = None) -> None:
        super().__init__()
        weight = linear.weight.detach().float()                                   # (out, in)
        weight = torch.cat([weight, weight.new_zeros(weight.shape[0], EDGE_COLUMNS)], dim=1)
        scales = (weight.abs().amax(dim=1).clamp_min(1e-12) / 127).double()      # (out,)
        with _quietly():
            qweight = torch.quantize_per_channel(weight, scales, torch.zeros_like(scales, dtype=torch.long), 0,
                                                 torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(qweight, None)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.rows = rows or RowScaler()   # a model's layers share one (quantize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, scale = self.rows(x)
        y = torch.ops.quantized.linear_dynamic(rows, self.packed, True).mul_(scale)   # reduce_range: AVX2 fbgemm
        return y if self.bias is None else y + self.bias


def quantize(model: nn.Module, kind: str) -> nn.Module:
    """``model`` with every ``nn.Linear`` replaced as ``kind`` says (in place); ValueError
    for a kind not in ``QUANTIZATIONS``."""
    if kind not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {kind!r}; valid: {', '.join(QUANTIZATIONS)}")
    if kind == "fp16":
        with _quietly():
            return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.float16, inplace=True)
    if kind == "int8":
        rows = RowScaler()
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, Int8Linear(child, rows))
    return model
