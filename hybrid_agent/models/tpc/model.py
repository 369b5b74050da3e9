"""The tool-policy classifier (TPC): hashed features of a tool call and of the goal, each
pooled into one vector by its own bag of embeddings, then a small MLP to one logit (the
call is dangerous). See features.py for what the ids are."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TPCConfig:
    buckets: int = 1 << 15        # hashed call features
    goal_buckets: int = 1 << 11   # hashed goal words: a separate, smaller table
    dim: int = 16
    hidden: int = 64
    dropout: float = 0.1
    # Training only: the whole goal is dropped this often, so that the call alone must
    # carry the verdict (an innocent-sounding goal must not hide a dangerous call).
    goal_dropout: float = 0.5


class ToolPolicyClassifier(nn.Module):
    def __init__(self, config: TPCConfig) -> None:
        super().__init__()
        self.config = config
        # Mean pooling: a long script and a one-word command land on the same scale.
        self.call = nn.EmbeddingBag(config.buckets, config.dim, mode="mean")
        self.goal = nn.EmbeddingBag(config.goal_buckets, config.dim, mode="mean")
        # ReLU, not GELU: torch's CPU GELU costs milliseconds on a busy machine, and the
        # engine calls this once per tool call.
        self.mlp = nn.Sequential(
            nn.Linear(2 * config.dim, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1),
        )
        # Small initial embeddings: a feature never seen in training must add little noise
        # (the default N(0, 1) let one unseen n-gram swing a short command's score).
        nn.init.normal_(self.call.weight, std=0.1)
        nn.init.normal_(self.goal.weight, std=0.1)

    def forward(self, call_ids: torch.Tensor, call_offsets: torch.Tensor,
                goal_ids: torch.Tensor, goal_offsets: torch.Tensor) -> torch.Tensor:
        """Flat ids with per-example offsets (features.collate) -> logits (B,)."""
        call = self.call(call_ids, call_offsets)                  # (B, dim)
        goal = self.goal(goal_ids, goal_offsets)                  # (B, dim); zeros for an empty goal
        if self.training and self.config.goal_dropout > 0:
            kept = torch.rand(goal.shape[0], 1) >= self.config.goal_dropout
            goal = goal * kept                                    # (B, dim), as if no goal was given
        return self.mlp(torch.cat([call, goal], dim=-1)).squeeze(-1)   # (B,)
