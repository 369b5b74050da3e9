"""What the agent loop calls: score the K candidates of one state, lowest energy first in
preference. ``load_reranker()`` gives the trained energy model when a checkpoint exists and
otherwise a neutral reranker whose energy is the negated mean log-probability, so that an
untrained EBM ranks exactly as the LLM alone would, and says so."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import torch

from hybrid_agent.models.checkpoints import read_checkpoint

from hybrid_agent.models.ebm import calibration
from hybrid_agent.models.ebm.features import FEATURE_VERSION, CandidateView, StateView, batch, encode
from hybrid_agent.models.ebm.model import EBMConfig, EnergyModel

DEFAULT_CHECKPOINT = Path(__file__).with_name("ebm.pt")
CHECKPOINT_FORMAT = "hybrid-agent/ebm"
CHECKPOINT_VERSION = 1


class EBMError(ValueError):
    """The checkpoint is missing, unreadable, or not one this code can use."""


@dataclass(frozen=True)
class Ranked:
    energy: float                 # lower is better
    p_success: float | None       # calibrated P(success); None when the reranker is untrained


class Reranker(Protocol):
    name: str
    trained: bool
    note: str                     # one line for the journal: what ranks and on what evidence

    def score(self, state: StateView, candidates: list[CandidateView]) -> list[Ranked]: ...


class NeutralReranker:
    """No trained model: the LLM's own ranking, energy = -mean log-probability."""

    name = "neutral"
    trained = False
    note = "untrained: ranks by LLM log-probability"

    def score(self, state: StateView, candidates: list[CandidateView]) -> list[Ranked]:
        return [Ranked(energy=-c.mean_logprob, p_success=None) for c in candidates]


class EnergyReranker:
    """A trained energy model and its calibration."""

    name = "ebm"
    trained = True

    def __init__(self, model: EnergyModel, calibrate: calibration.Calibration, metrics: dict[str, Any]) -> None:
        self.model = model.eval()
        self.calibrate = calibrate
        self.metrics = metrics
        test = metrics.get("test", {})
        self.note = (f"trained EBM: held-out AUC {test.get('auc', float('nan')):.3f}, "
                     f"top-1 {test.get('top1', float('nan')):.3f}")

    def energies(self, state: StateView, candidates: list[CandidateView]) -> list[float]:
        config = self.model.config
        encoded = encode(state, candidates, buckets=config.buckets, state_buckets=config.state_buckets,
                         cross_buckets=config.cross_buckets)
        with torch.inference_mode():
            return self.model(*batch([encoded])).tolist()

    def score(self, state: StateView, candidates: list[CandidateView]) -> list[Ranked]:
        if not candidates:
            return []
        return [Ranked(energy=e, p_success=self.calibrate(e)) for e in self.energies(state, candidates)]


def margin(ranked: Sequence[Ranked]) -> float:
    """The energy gap between the best candidate and the second best; inf when there are
    fewer than two (nothing to choose between)."""
    if len(ranked) < 2:
        return math.inf
    best, second = sorted(r.energy for r in ranked)[:2]
    return second - best


def load_reranker(checkpoint: Path | None = None) -> Reranker:
    """The energy model saved at ``checkpoint``; with None, the one shipped with the package
    when there is one, else the neutral reranker. A named checkpoint that is missing or
    unusable is an error, never a silent fallback."""
    if checkpoint is None:
        if not DEFAULT_CHECKPOINT.is_file():
            return NeutralReranker()
        checkpoint = DEFAULT_CHECKPOINT
    saved = read_checkpoint(checkpoint, fmt=CHECKPOINT_FORMAT, versions=(CHECKPOINT_VERSION, FEATURE_VERSION),
                            error=EBMError, train_module="hybrid_agent.models.ebm.train")
    try:
        config = EBMConfig(**{f.name: saved["config"][f.name] for f in fields(EBMConfig)})
        model = EnergyModel(config)
        model.load_state_dict(saved["state_dict"])
        return EnergyReranker(model, calibration.from_dict(saved["calibration"]), dict(saved["metrics"]))
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise EBMError(f"{checkpoint} does not match the EBM: {exc!r}") from exc
