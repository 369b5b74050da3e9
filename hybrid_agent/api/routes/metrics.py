"""Prometheus metrics, read from the store at scrape time: tasks by status, events, step
latency, candidates per step, approvals pending and how long decisions took, policy
denials and holds, rollbacks. Scraped with a viewer token (a bearer header)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import func

from hybrid_agent.api.auth import Principal, require
from hybrid_agent.store import queries
from hybrid_agent.store.tables import ApprovalRow, EventRow, JournalRow, RestoreRow, StepRow, TaskRow

router = APIRouter(tags=["metrics"])
STEP_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120)
CANDIDATE_BUCKETS = (1, 2, 4, 8, 16, 32)
DECISION_BUCKETS = (10, 60, 300, 900, 3600, 14400, 86400)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request, _: Principal = Depends(require("viewer"))) -> PlainTextResponse:
    async with request.app.state.sessions() as session:
        tasks = await queries.counts_by(session, column=TaskRow.status)
        approvals = await queries.counts_by(session, column=ApprovalRow.status)
        rollbacks = await queries.counts_by(session, column=RestoreRow.reason)
        events = await queries.count_rows(session, table=EventRow)
        holds = {verdict: await queries.count_rows(session, table=JournalRow, where=JournalRow.kind == f"policy.{verdict}")
                 for verdict in ("deny", "approve")}
        steps = await queries.histogram(session, value=StepRow.duration_s, bounds=STEP_BUCKETS)
        candidates = await queries.histogram(session, value=func.json_array_length(StepRow.candidates),
                                             bounds=CANDIDATE_BUCKETS)
        decided = await queries.decided_approval_times(session)
    waits = [(decided_at - created).total_seconds() for created, decided_at in decided]
    lines = [
        *_labelled("ha_tasks", "Tasks by status.", "gauge", "status", tasks),
        "# HELP ha_events_total Events received from every trigger.", "# TYPE ha_events_total counter",
        f"ha_events_total {events}",
        *_histogram("ha_step_duration_seconds", "Agent step duration.", STEP_BUCKETS, *steps),
        *_histogram("ha_step_candidates", "Candidates scored per step.", CANDIDATE_BUCKETS, *candidates),
        *_labelled("ha_approvals", "Approvals by status.", "gauge", "status", approvals),
        *_histogram("ha_approval_decision_seconds", "From a held call to its decision (latest 10,000).",
                    DECISION_BUCKETS, [sum(w <= b for w in waits) for b in DECISION_BUCKETS], sum(waits), len(waits)),
        *_labelled("ha_policy_decisions_total", "Candidate calls the policy denied or held.", "counter", "decision",
                   holds),
        *_labelled("ha_rollbacks_total", "Restores to a snapshot, by why.", "counter", "reason", rollbacks),
    ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def _labelled(name: str, help_: str, kind: str, label: str, values: dict[str, int]) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} {kind}",
            *(f'{name}{{{label}="{key}"}} {value}' for key, value in sorted(values.items()))]


def _histogram(name: str, help_: str, bounds: Sequence[float], cumulative: Sequence[int], total: float,
               count: int) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} histogram",
            *(f'{name}_bucket{{le="{bound:g}"}} {n}' for bound, n in zip(bounds, cumulative)),
            f'{name}_bucket{{le="+Inf"}} {count}', f"{name}_sum {total:g}", f"{name}_count {count}"]
