"""Choosing experts by name: ``code_edit``, ``playbook``."""

from __future__ import annotations

from collections.abc import Sequence

from hybrid_agent.agents.experts.base import Expert
from hybrid_agent.agents.experts.code_edit import CodeEditExpert
from hybrid_agent.agents.experts.playbook import Playbook, PlaybookExpert

NAMES = ("code_edit", "playbook")


def make_experts(names: Sequence[str], *, playbook: Playbook | None = None) -> list[Expert]:
    """The named experts, in order. ``playbook`` needs the index it recalls from, built
    by the caller from the store (``Playbook.from_rows(await queries.succeeded_steps(...))``)."""
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        raise ValueError(f"unknown expert {unknown[0]!r}; valid: {', '.join(NAMES)}")
    experts: list[Expert] = []
    for name in names:
        if name == "code_edit":
            experts.append(CodeEditExpert())
        elif playbook is None:
            raise ValueError("the playbook expert needs a Playbook: Playbook.from_rows(queries.succeeded_steps(...))")
        else:
            experts.append(PlaybookExpert(playbook))
    return experts
