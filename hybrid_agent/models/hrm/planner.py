"""What the agent loop calls once per step: ``load_planner(...).plan(state)``.

A trained planner runs the model segment by segment and really stops at the first segment
whose Q-head values halting above going on (or at the checkpoint's segment limit): one
segment where another is not expected to make its answer right more often (train.py).
The scheduler sets the compute budget from the segments and the risk. Without a checkpoint the
planner is neutral (uniform priors, no risk) and says so: an untrained HRM must not make
the agent worse than the LLM alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from hybrid_agent.models.hrm.checkpoint import Checkpoint, HRMError, load
from hybrid_agent.models.hrm.model import halts
from hybrid_agent.models.hrm.state import StepState, encode_states
from hybrid_agent.models.hrm.text import FakeHashEncoder, MiniLMEncoder, TextEncoder, default_encoder

NEUTRAL_NOTE = "untrained: neutral prior"


@dataclass(frozen=True)
class PlanOutput:
    tool_prior: dict[str, float]       # over the tools asked for; sums to 1
    expert_prior: dict[str, float]     # over the experts asked for; sums to 1
    risk: float | None                 # P(the task fails within the next steps); None: unknown
    segments: int                      # segments run before halting
    halted_early: bool                 # the Q-head halted before the segment limit
    trained: bool
    note: str


class Planner(Protocol):
    name: str
    trained: bool
    note: str       # what it is, for the journal

    def plan(self, state: StepState) -> PlanOutput: ...


class NeutralPlanner:
    name = "neutral"
    trained = False
    note = NEUTRAL_NOTE

    def __init__(self, tools: Sequence[str], experts: Sequence[str]) -> None:
        self._tools = _uniform(tools)
        self._experts = _uniform(experts)

    def plan(self, state: StepState) -> PlanOutput:
        return PlanOutput(dict(self._tools), dict(self._experts), None, 1, False, False, self.note)


class HRMPlanner:
    trained = True

    def __init__(self, checkpoint: Checkpoint, text: TextEncoder, tools: Sequence[str], experts: Sequence[str]) -> None:
        self.name = checkpoint.variant
        self._model = checkpoint.model.eval()
        self._text = text
        self._max_segments = checkpoint.max_segments
        self._tools = _columns(checkpoint.tools, tools)
        self._experts = _columns(checkpoint.experts, experts)
        unknown = [n for n, col in [*self._tools.items(), *self._experts.items()] if col is None]
        self.note = f"{self.name} checkpoint"
        if unknown:
            self.note += f"; not trained on {unknown}: given the mean prior"

    def plan(self, state: StepState) -> PlanOutput:
        x = encode_states([state], self._text)                                   # (1, L, d_in)
        carry = None
        with torch.inference_mode():
            for segment in range(1, self._max_segments + 1):
                carry, out = self._model(x, carry)
                halted = bool(halts(out)[0])
                if halted:
                    break
        return PlanOutput(_prior(out.tool_logits[0], self._tools), _prior(out.expert_logits[0], self._experts),
                          torch.sigmoid(out.risk_logit[0]).item(), segment,
                          halted and segment < self._max_segments, True, self.note)


def load_planner(checkpoint: Path | None, *, variant: str = "hrm", tools: list[str], experts: list[str],
                 text: TextEncoder | None = None) -> Planner:
    """The planner of ``checkpoint`` (a ``variant`` one; HRMError otherwise), or the neutral
    planner when there is none. ``text`` overrides the encoder the checkpoint names."""
    if checkpoint is None:
        return NeutralPlanner(tools, experts)
    loaded = load(checkpoint)
    if loaded.variant != variant:
        raise HRMError(f"{checkpoint} holds a {loaded.variant!r} model, not the {variant!r} asked for")
    return HRMPlanner(loaded, text or _encoder(loaded.encoder), tools, experts)


def default_checkpoint(variant: str = "hrm") -> Path | None:
    """The checkpoint shipped with the package for ``variant``, if there is one."""
    path = Path(__file__).with_name(f"{variant}.pt")
    return path if path.is_file() else None


def _encoder(name: str) -> TextEncoder:
    if name == MiniLMEncoder.name:
        return default_encoder()
    if name.startswith(FakeHashEncoder.prefix):
        return FakeHashEncoder(int(name.removeprefix(FakeHashEncoder.prefix)))
    raise HRMError(f"the checkpoint's text encoder {name!r} is not one this code has")


def _columns(trained: list[str], asked: Sequence[str]) -> dict[str, int | None]:
    """Each asked-for name's output column (None: the model never saw it)."""
    return {name: trained.index(name) if name in trained else None for name in asked}


def _prior(logits: torch.Tensor, columns: dict[str, int | None]) -> dict[str, float]:
    """Softmax over the asked-for names' columns; names without one get the mean."""
    known = [c for c in columns.values() if c is not None]
    if not known:
        return _uniform(list(columns))
    probs = dict(zip(known, torch.softmax(logits[known], dim=-1).tolist()))
    mean = 1.0 / len(known)
    raw = {name: probs[c] if c is not None else mean for name, c in columns.items()}
    total = sum(raw.values())
    return {name: p / total for name, p in raw.items()}


def _uniform(names: Sequence[str]) -> dict[str, float]:
    return {name: 1.0 / len(names) for name in names} if names else {}
