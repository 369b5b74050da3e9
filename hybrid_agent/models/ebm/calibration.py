"""Energy -> P(success), fitted on held-out (energy, outcome) pairs.

Platt scaling, P = sigmoid(a * -energy + b), by default: two parameters cannot overfit a
few hundred pairs, and a > 0 keeps the ranking. Isotonic regression (pool adjacent
violators) fits any monotone shape but needs many pairs to do better than it overfits, so
``fit`` uses it only from ``ISOTONIC_MIN_PAIRS`` pairs on. The expected calibration error
(ECE, equal-width bins) measures either."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

ISOTONIC_MIN_PAIRS = 1000
ECE_BINS = 10


def uncalibrated(energy: float) -> float:
    """What the training's logistic term makes of an energy: sigmoid(-energy)."""
    return 1.0 / (1.0 + math.exp(min(energy, 700.0)))


@dataclass(frozen=True)
class Platt:
    a: float
    b: float

    def __call__(self, energy: float) -> float:
        return 1.0 / (1.0 + math.exp(min(self.a * energy - self.b, 700.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", "a": self.a, "b": self.b}


@dataclass(frozen=True)
class Isotonic:
    """A decreasing function of energy: the pooled blocks' success rates at their mean
    energies, linear in between, flat beyond the ends."""

    energies: tuple[float, ...]   # ascending
    probs: tuple[float, ...]      # decreasing

    def __call__(self, energy: float) -> float:
        i = bisect.bisect_left(self.energies, energy)
        if i == 0:
            return self.probs[0]
        if i == len(self.energies):
            return self.probs[-1]
        e0, e1 = self.energies[i - 1], self.energies[i]
        p0, p1 = self.probs[i - 1], self.probs[i]
        return p0 + (p1 - p0) * (energy - e0) / (e1 - e0)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", "energies": list(self.energies), "probs": list(self.probs)}


Calibration = Platt | Isotonic


def from_dict(data: dict[str, Any]) -> Calibration:
    if data["method"] == "platt":
        return Platt(float(data["a"]), float(data["b"]))
    if data["method"] == "isotonic":
        return Isotonic(tuple(map(float, data["energies"])), tuple(map(float, data["probs"])))
    raise ValueError(f"unknown calibration method {data['method']!r}")


def _check(energies: Sequence[float], outcomes: Sequence[float]) -> None:
    if len(energies) != len(outcomes) or not energies:
        raise ValueError("calibration needs as many outcomes as energies, and at least one")
    if len(set(outcomes)) < 2:
        raise ValueError("calibration needs both successes and failures")


def fit_platt(energies: Sequence[float], outcomes: Sequence[float]) -> Platt:
    """The (a, b) of least log-loss, by L-BFGS from the identity (a=1, b=0)."""
    _check(energies, outcomes)
    x = -torch.tensor(energies, dtype=torch.float64)
    y = torch.tensor(outcomes, dtype=torch.float64)
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(params[0] * x + params[1], y)
        loss.backward()
        return loss

    optimizer.step(closure)
    a, b = params.detach().tolist()
    return Platt(a, b)


def fit_isotonic(energies: Sequence[float], outcomes: Sequence[float]) -> Isotonic:
    """The decreasing fit of outcome on energy (pool adjacent violators)."""
    _check(energies, outcomes)
    blocks: list[list[float]] = []            # [sum of energies, sum of outcomes, count]
    for energy, outcome in sorted(zip(energies, outcomes)):
        blocks.append([energy, outcome, 1.0])
        # P(success) must fall with energy: merge while a block does not fall below the one
        # before (equal ones too, so that no two blocks share an energy).
        while len(blocks) > 1 and blocks[-1][1] / blocks[-1][2] >= blocks[-2][1] / blocks[-2][2]:
            e, o, n = blocks.pop()
            blocks[-1][0] += e
            blocks[-1][1] += o
            blocks[-1][2] += n
    return Isotonic(tuple(e / n for e, _, n in blocks), tuple(o / n for _, o, n in blocks))


def fit(energies: Sequence[float], outcomes: Sequence[float]) -> Calibration:
    """Isotonic from ``ISOTONIC_MIN_PAIRS`` pairs on, Platt below."""
    if len(energies) >= ISOTONIC_MIN_PAIRS:
        return fit_isotonic(energies, outcomes)
    return fit_platt(energies, outcomes)


def ece(probs: Sequence[float], outcomes: Sequence[float], bins: int = ECE_BINS) -> float:
    """Expected calibration error: over equal-width bins of predicted probability, the
    mean |success rate - mean prediction| weighted by the bin's share of pairs."""
    totals = [[0.0, 0.0, 0] for _ in range(bins)]     # [sum of predictions, sum of outcomes, count]
    for p, y in zip(probs, outcomes):
        total = totals[min(int(p * bins), bins - 1)]
        total[0] += p
        total[1] += y
        total[2] += 1
    return sum(abs(s - o) for s, o, n in totals if n) / max(len(probs), 1)
