"""The energy model: (state, candidate tool call) -> one scalar energy, lower is better.

A text encoder pools the hashed ids (features.py) of the state, of the candidate and of
their crosses (goal word x call word) into one vector each; an MLP reads them and the
elementwise product of state and candidate (the interaction: does this call fit this
state?) to an energy; a linear term on the hard features adds what is known for certain
(a parse error, a policy flag, a repeat of a failed call). The encoder
is a module of its own so that another one with the same output, such as an MLP over the
LLM's pooled hidden states of the candidate, can take its place."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hybrid_agent.models.ebm.features import FEATURES, SLOT


@dataclass(frozen=True)
class EBMConfig:
    buckets: int = 1 << 13         # hashed candidate ids
    state_buckets: int = 1 << 12   # hashed state ids: a separate, smaller table
    cross_buckets: int = 1 << 13   # hashed (goal word, call word) pairs
    dim: int = 32
    hidden: int = 64
    dropout: float = 0.1
    features: int = len(FEATURES)


class HashedPairEncoder(nn.Module):
    """Mean-pooled bags of hashed ids: (state, candidate, crosses) -> [s, c, s * c, x]."""

    def __init__(self, config: EBMConfig) -> None:
        super().__init__()
        # Mean pooling: a long script and a one-word command land on the same scale.
        self.state = nn.EmbeddingBag(config.state_buckets, config.dim, mode="mean")
        self.candidate = nn.EmbeddingBag(config.buckets, config.dim, mode="mean")
        # Its own table: pooled with the candidate's many byte n-grams, the few crosses
        # would be drowned.
        self.cross = nn.EmbeddingBag(config.cross_buckets, config.dim, mode="mean")
        # Small initial embeddings: an id never seen in training must add little noise.
        for bag in (self.state, self.candidate, self.cross):
            nn.init.normal_(bag.weight, std=0.1)
        self.out_dim = 4 * config.dim

    def forward(self, state_ids: torch.Tensor, state_offsets: torch.Tensor, candidate_ids: torch.Tensor,
                candidate_offsets: torch.Tensor, cross_ids: torch.Tensor, cross_offsets: torch.Tensor) -> torch.Tensor:
        s = self.state(state_ids, state_offsets)                   # (B, dim)
        c = self.candidate(candidate_ids, candidate_offsets)       # (B, dim)
        x = self.cross(cross_ids, cross_offsets)                   # (B, dim)
        return torch.cat([s, c, s * c, x], dim=-1)                 # (B, 4 * dim)


class EnergyModel(nn.Module):
    def __init__(self, config: EBMConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = HashedPairEncoder(config)
        # ReLU, not GELU: torch's CPU GELU is slow on a busy machine, and this runs every step.
        self.head = nn.Sequential(
            nn.Linear(self.encoder.out_dim, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1),
        )
        self.hard = nn.Linear(config.features, 1, bias=False)
        # The hard weights start as the LLM-only ranking: energy = -mean log-probability, no
        # opinion on the rest until training gives one.
        nn.init.zeros_(self.hard.weight)
        with torch.no_grad():
            self.hard.weight[0, SLOT["mean_logprob"]] = -1.0

    def forward(self, state_ids: torch.Tensor, state_offsets: torch.Tensor, candidate_ids: torch.Tensor,
                candidate_offsets: torch.Tensor, cross_ids: torch.Tensor, cross_offsets: torch.Tensor,
                features: torch.Tensor) -> torch.Tensor:
        """B pairs: flat ids with per-pair offsets of the states, candidates and crosses
        (features.batch) and the hard features (B, features) -> energies (B,)."""
        pair = self.encoder(state_ids, state_offsets, candidate_ids, candidate_offsets,
                            cross_ids, cross_offsets)                                    # (B, 4 * dim)
        return self.head(pair).squeeze(-1) + self.hard(features).squeeze(-1)            # (B,)
