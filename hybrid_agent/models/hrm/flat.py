"""The ``flat_hrm`` ablation: one stack of transformer blocks, as many as the HRM's two
modules together (so the same parameters), run once per segment, with the same input,
heads and forward signature. No hierarchy and no inner recurrence: what stays is the
segment loop the trainer and planner drive (deep supervision, Q-head halting), with the
previous segment's detached state added to the input. That is the comparison of the ARC
Prize re-evaluation of the HRM, which found such a transformer within a few points of it:
the hierarchy has to earn its place against this."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hybrid_agent.models.hrm.model import Heads, PlanHeads, Stack


@dataclass(frozen=True)
class FlatConfig:
    d_in: int
    n_tools: int
    n_experts: int
    hidden: int = 256
    heads: int = 4
    blocks: int = 4           # the HRM's 2 x 2


@dataclass
class FlatCarry:
    z: torch.Tensor           # (B, L, hidden)


class FlatTransformer(nn.Module):
    def __init__(self, config: FlatConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Sequential(nn.Linear(config.d_in, config.hidden), nn.RMSNorm(config.hidden))
        self.stack = Stack(config.hidden, config.heads, config.blocks)
        self.heads = Heads(config.hidden, config.n_tools, config.n_experts)

    def forward(self, x: torch.Tensor, carry: FlatCarry | None = None) -> tuple[FlatCarry, PlanHeads]:
        """One segment: x (B, L, d_in) and the previous segment's carry (None: start)."""
        u = self.embed(x)                                                        # (B, L, hidden)
        z = self.stack(u if carry is None else carry.z + u)                      # (B, L, hidden)
        return FlatCarry(z.detach()), self.heads(z)
