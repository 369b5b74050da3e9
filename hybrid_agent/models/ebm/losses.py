"""Training losses over groups: the K candidates proposed for one state, padded to (G, K).

Listwise InfoNCE teaches the ranking within a state: softmax over -energy, the candidate
that succeeded is the class. The logistic term teaches the scale across states: sigmoid(-energy)
should be P(success) for every candidate whose outcome is known, so that one energy
threshold means the same in every state (and calibration only has to fine-tune it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def infonce(energy: torch.Tensor, positive: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """energy (G, K), positive (G,) index of the success or -1 when none succeeded, mask
    (G, K) True for real candidates -> mean -log softmax(-energy)[positive] over the groups
    that have a success (0 when none has)."""
    rows = positive >= 0                                                 # (G,)
    if not bool(rows.any()):
        return energy.sum() * 0.0            # keeps the graph: a batch of all-failed groups
    logits = (-energy[rows]).masked_fill(~mask[rows], float("-inf"))    # (G', K)
    return F.cross_entropy(logits, positive[rows])


def logistic(energy: torch.Tensor, outcome: torch.Tensor) -> torch.Tensor:
    """energy and outcome of the same shape, outcome 1 (success), 0 (failure) or NaN
    (unknown: not run, or padding) -> mean BCE of sigmoid(-energy) on the known ones."""
    known = ~torch.isnan(outcome)
    if not bool(known.any()):
        return energy.sum() * 0.0
    return F.binary_cross_entropy_with_logits(-energy[known], outcome[known])


def ebm_loss(energy: torch.Tensor, positive: torch.Tensor, mask: torch.Tensor, outcome: torch.Tensor,
             logistic_weight: float = 0.5) -> torch.Tensor:
    """InfoNCE over each group plus ``logistic_weight`` times the per-candidate logistic term."""
    return infonce(energy, positive, mask) + logistic_weight * logistic(energy, outcome)


def pad_groups(flat: torch.Tensor, sizes: list[int], fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) values of G consecutive groups of the given sizes -> (G, max size) padded with
    ``fill``, and the (G, max size) mask of real entries."""
    width = max(sizes)
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(sizes).unsqueeze(1)   # (G, K)
    padded = torch.full((len(sizes), width), fill, dtype=flat.dtype)
    # masked_scatter fills row-major, the order of the flat groups; differentiable in flat.
    return padded.masked_scatter(mask, flat), mask
