"""The Hierarchical Reasoning Model (Wang et al. 2025, arXiv 2506.21734), sized for a
planner: a slow high-level module (z_H) and a fast low-level one (z_L), each a stack of
transformer blocks over the state's tokens. One segment runs ``high_cycles`` (N) cycles of
``low_steps`` (T) low-level steps each:

    z_L <- f_L(z_L + z_H + x)     every step, the input x re-injected
    z_H <- f_H(z_H + z_L)         once per cycle

One-step gradient: every update but the last low and the last high one runs without a
graph, so training memory is that of one step of each module, whatever N and T are.
Deep supervision (train.py) calls ``forward`` once per segment with the detached carry of
the one before; the planner stops at the first segment whose Q-head says halt."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class HRMConfig:
    d_in: int                 # per-token input features (state.input_dim)
    n_tools: int
    n_experts: int
    hidden: int = 256
    heads: int = 4
    blocks: int = 2           # per module
    high_cycles: int = 2      # N
    low_steps: int = 2        # T


@dataclass
class HRMCarry:
    z_high: torch.Tensor      # (B, L, hidden)
    z_low: torch.Tensor       # (B, L, hidden)


@dataclass
class PlanHeads:
    plan: torch.Tensor            # (B, hidden) the plan latent: pooled z_H, read by every head
    tool_logits: torch.Tensor     # (B, n_tools) the next tool
    expert_logits: torch.Tensor   # (B, n_experts) which proposer to trust
    risk_logit: torch.Tensor      # (B,) the task fails within the next steps
    q_logits: torch.Tensor        # (B, 2) (halt, continue) values


class Block(nn.Module):
    """Bidirectional attention and a SwiGLU MLP, post-norm as in the HRM: the recurrent
    states keep one scale however many steps add into them."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.out = nn.Linear(hidden, hidden, bias=False)
        inner = 8 * hidden // 3     # SwiGLU's three matrices at this width weigh what a 4x MLP's two do
        self.up = nn.Linear(hidden, 2 * inner, bias=False)
        self.down = nn.Linear(inner, hidden, bias=False)
        self.norm1 = nn.RMSNorm(hidden)
        self.norm2 = nn.RMSNorm(hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        B, L, H = z.shape
        qkv = self.qkv(z).view(B, L, 3, self.heads, H // self.heads).transpose(1, 3)  # (B, heads, 3, L, H/heads)
        q, k, v = qkv.unbind(2)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, H)
        z = self.norm1(z + self.out(attended))
        gate, value = self.up(z).chunk(2, dim=-1)                                # (B, L, inner) each
        return self.norm2(z + self.down(F.silu(gate) * value))                   # (B, L, H)


class Stack(nn.Module):
    def __init__(self, hidden: int, heads: int, blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(hidden, heads) for _ in range(blocks))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            z = block(z)
        return z


class Heads(nn.Module):
    """Every output from the mean-pooled final state (the HRM variant's z_H)."""

    def __init__(self, hidden: int, n_tools: int, n_experts: int) -> None:
        super().__init__()
        self.tool = nn.Linear(hidden, n_tools)
        self.expert = nn.Linear(hidden, n_experts)
        self.risk = nn.Linear(hidden, 1)
        self.q = nn.Linear(hidden, 2)
        # The paper's Q-head start: zero weights, a bias far below 0. The bootstrapped
        # continue target then starts small and stable, and nothing halts before it learns.
        nn.init.zeros_(self.q.weight)
        nn.init.constant_(self.q.bias, -5.0)

    def forward(self, z: torch.Tensor) -> PlanHeads:
        plan = z.mean(dim=1)                                                     # (B, hidden)
        return PlanHeads(plan, self.tool(plan), self.expert(plan), self.risk(plan).squeeze(-1), self.q(plan))


class HRM(nn.Module):
    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        self.config = config
        # Normed so that the injected input has the scale of the (normed) states it joins.
        self.embed = nn.Sequential(nn.Linear(config.d_in, config.hidden), nn.RMSNorm(config.hidden))
        self.low = Stack(config.hidden, config.heads, config.blocks)
        self.high = Stack(config.hidden, config.heads, config.blocks)
        self.heads = Heads(config.hidden, config.n_tools, config.n_experts)
        # Fixed, not learned, starting states (as in the paper): under the one-step gradient
        # no gradient ever reaches them.
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("z_high0", torch.randn(config.hidden, generator=generator).clamp(-2, 2))
        self.register_buffer("z_low0", torch.randn(config.hidden, generator=generator).clamp(-2, 2))

    def initial_carry(self, x: torch.Tensor) -> HRMCarry:
        B, L, _ = x.shape
        return HRMCarry(self.z_high0.expand(B, L, -1), self.z_low0.expand(B, L, -1))

    def forward(self, x: torch.Tensor, carry: HRMCarry | None = None) -> tuple[HRMCarry, PlanHeads]:
        """One segment: x (B, L, d_in) and the previous segment's carry (None: start)."""
        carry = self.initial_carry(x) if carry is None else carry
        u = self.embed(x)                                                        # (B, L, hidden)
        z_high, z_low = carry.z_high, carry.z_low                                # (B, L, hidden) each
        N, T = self.config.high_cycles, self.config.low_steps
        with torch.no_grad():
            for step in range(1, N * T):
                z_low = self.low(z_low + z_high + u)
                if step % T == 0:
                    z_high = self.high(z_high + z_low)
        z_low = self.low(z_low + z_high + u)                                     # the two steps with a graph
        z_high = self.high(z_high + z_low)
        return HRMCarry(z_high.detach(), z_low.detach()), self.heads(z_high)


def halts(out: PlanHeads) -> torch.Tensor:
    """(B,) bool: the Q-head values halting above going on."""
    return out.q_logits[:, 0] > out.q_logits[:, 1]
