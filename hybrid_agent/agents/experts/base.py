"""Proposers other than the LLM. An expert reads the step's context and offers tool calls
as ``Candidate``s, so that they go through the same checks (schema, preflight, policy) and
the same reranking as the LLM's. Its ``logprob`` is its own log-score for the call, and
``tokens`` is 1: the loop's mean log-probability per token is then that score."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hybrid_agent.models.llm.base import Candidate


@dataclass(frozen=True)
class ExpertContext:
    goal: str
    workspace: Path
    last_observation: str | None = None      # the most recent tool output, e.g. a failing test's traceback
    last_call: dict[str, Any] | None = None  # the call that produced it


class Expert(Protocol):
    name: str
    # Offers code edits that scoring can verify by running the tests (loop.trial): worth
    # asking for several, since the wrong ones are caught before they act.
    verifiable: bool

    def propose(self, context: ExpertContext, k: int) -> list[Candidate]:
        """Up to ``k`` calls, best first; [] when the expert has nothing to offer."""
        ...


def expert_candidate(call: dict[str, Any], score: float) -> Candidate:
    """A call as a candidate; ``score`` in (0, 1] is the expert's confidence in it."""
    return Candidate(text=json.dumps(call), parsed=call, logprob=math.log(score), tokens=1)
