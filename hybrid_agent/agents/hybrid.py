"""The hybrid model's parts as the agent loop uses them, chosen by the ablation: the HRM
(or its flat variant) plans and sets the compute budget, experts propose beside the LLM,
the EBM reranks. A part without a
trained checkpoint falls back to a neutral one (uniform priors; ranking by the LLM's
log-probability) that says so, so that an untrained hybrid is never worse than the LLM
alone. The journal records which ran."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_agent.agents.experts import Expert

from hybrid_agent.config import ABLATIONS
from hybrid_agent.models.ebm import Reranker, load_reranker
from hybrid_agent.models.hrm.planner import Planner, default_checkpoint, load_planner
from hybrid_agent.policies.tool_schema import TOOL_ARGS

@dataclass(frozen=True)
class Hybrid:
    ablation: str
    planner: Planner | None     # None: the HRM is off (llm_only, no_hrm)
    reranker: Reranker | None   # None: the EBM is off (llm_only, no_ebm)
    experts: tuple[Expert, ...] = ()   # proposers besides the LLM (none under llm_only)

    @property
    def schedules(self) -> bool:
        """Whether the scheduler sets K (everything but llm_only, which keeps K fixed)."""
        return self.ablation != "llm_only"

    def record(self) -> dict[str, Any]:
        return {"ablation": self.ablation, "planner": _describe(self.planner),
                "reranker": _describe(self.reranker), "experts": [expert.name for expert in self.experts]}


LLM_ONLY = Hybrid("llm_only", None, None)


def load_hybrid(ablation: str, *, hrm_checkpoint: Path | None = None, ebm_checkpoint: Path | None = None,
                experts: Sequence[Expert] = ()) -> Hybrid:
    """The parts ``ablation`` keeps; ValueError naming the valid ablations otherwise."""
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; valid: {', '.join(ABLATIONS)}")
    if ablation == "llm_only":
        return LLM_ONLY
    planner = None
    if ablation != "no_hrm":
        variant = "flat" if ablation == "flat_hrm" else "hrm"
        planner = load_planner(hrm_checkpoint or default_checkpoint(variant), variant=variant,
                               tools=list(TOOL_ARGS), experts=["llm", *(expert.name for expert in experts)])
    reranker = None if ablation == "no_ebm" else load_reranker(ebm_checkpoint)
    return Hybrid(ablation, planner, reranker, tuple(experts))


def _describe(part: Planner | Reranker | None) -> dict[str, Any] | None:
    if part is None:
        return None
    return {"name": part.name, "trained": part.trained, "note": part.note}
