"""The compute scheduler: how much to spend on the next step. One greedy candidate on the
fast path; more candidates and a deliberate step (a richer prompt) when the HRM needed
more segments before halting, rates the task at risk, or when the last step's choice was
uncertain (a low mean log-probability, a thin EBM margin). Pure: the loop journals what
it decided and why."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

SEGMENTS_TO_K = {1: 1, 2: 4}      # segments the HRM ran before halting -> candidates; more -> MAX
RISKY = 0.5                       # HRM risk above which the step is deliberate
UNSURE_LOGPROB = -1.0             # mean log-probability per token below which greedy was a guess
THIN_MARGIN = 0.1                 # EBM energy gap under which the best two were a toss-up


@dataclass(frozen=True)
class Signals:
    """What the scheduler reads; None where a component is off, untrained or has not run."""

    segments: int | None = None
    risk: float | None = None
    last_mean_logprob: float | None = None
    last_margin: float | None = None


@dataclass(frozen=True)
class Budget:
    k: int
    deliberate: bool
    reasons: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        return asdict(self)


def choose_budget(signals: Signals, *, max_k: int) -> Budget:
    """K in [1, max_k] and the deliberate flag, with the reasons for anything above the
    fast path (K = 1, not deliberate)."""
    k, reasons = 1, []
    if signals.segments is not None and signals.segments > 1:
        k = max(k, SEGMENTS_TO_K.get(signals.segments, 8))
        reasons.append(f"HRM halted after {signals.segments} segments")
    risky = signals.risk is not None and signals.risk > RISKY
    if risky:
        k = max(k, 4)
        reasons.append(f"HRM risk {signals.risk:.2f}")
    if signals.last_mean_logprob is not None and signals.last_mean_logprob < UNSURE_LOGPROB:
        k = max(k, 4)
        reasons.append(f"last choice unsure (mean log-prob {signals.last_mean_logprob:.2f})")
    if signals.last_margin is not None and math.isfinite(signals.last_margin) and signals.last_margin < THIN_MARGIN:
        k = max(k, 4)
        reasons.append(f"thin EBM margin {signals.last_margin:.2f}")
    return Budget(k=min(k, max_k), deliberate=risky or k >= 8, reasons=tuple(reasons))
