"""Held calls and people's decisions: the approval a parked task waits on (with the diff a
write or an edit would make), and the task's return to the queue once a person decided
or the approval expired."""

from __future__ import annotations

import difflib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.agents.loop import NeedsApproval
from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.messages import TaskMessage, new_id
from hybrid_agent.policies.tool_schema import ToolCall
from hybrid_agent.store import queries
from hybrid_agent.store.tables import ApprovalRow

DIFF_MAX_CHARS = 20_000


def diff_of(call: ToolCall, workspace: Path) -> str | None:
    """The unified diff a ``write_file`` or ``edit`` would make; None for other tools."""
    if call.tool not in ("write_file", "edit"):
        return None
    path = workspace / call.args["path"]
    try:
        old = path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        old = ""
    new = call.args["content"] if call.tool == "write_file" else old.replace(call.args["old"], call.args["new"], 1)
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{call.args['path']}", tofile=f"b/{call.args['path']}")
    return "".join(lines)[:DIFF_MAX_CHARS]


def approval_record(row: ApprovalRow) -> dict[str, Any]:
    """An approval as published on the bus (and as the API shows it)."""
    return {"id": row.id, "task_id": row.task_id, "kind": row.kind, "status": row.status, "tool_call": row.tool_call,
            "risk": row.risk, "reasons": row.reasons, "requested_by": row.requested_by,
            "expires_at": row.expires_at.isoformat(), "decided_by": row.decided_by, "reason": row.reason}


async def park(bus: Bus, sessions: async_sessionmaker[AsyncSession], *, task_id: str, held: NeedsApproval,
               workspace: Path, snapshot_id: str | None, ttl_s: float) -> str:
    """Park the task on its held call; returns the approval's id."""
    approval = {"step": held.step, "kind": "call", "tool_call": held.call.model_dump(),
                "diff": diff_of(held.call, workspace), "risk": held.decision.risk.value,
                "reasons": list(held.decision.reasons), "scores": held.scores, "snapshot_id": snapshot_id}
    return await _hold(bus, sessions, task_id=task_id, approval=approval, decision=held.decision.as_dict(),
                       ttl_s=ttl_s)


async def park_change_set(bus: Bus, sessions: async_sessionmaker[AsyncSession], *, task_id: str,
                          change_set: dict[str, Any], summary: str, ttl_s: float) -> str:
    """Park the task on a change set it proposes (a dry run's prediction, a CI fix):
    approval applies exactly that."""
    files = [item["path"] for item in change_set.get("files", [])]
    call = {"tool": "apply_change_set", "args": {"apply": change_set["apply"], "files": files[:200],
                                                 "branch": change_set.get("branch")}}
    approval = {"step": 0, "kind": "change_set", "tool_call": call, "change_set": change_set,
                "diff": (change_set.get("diff") or "")[:DIFF_MAX_CHARS], "risk": "medium", "reasons": [summary],
                "scores": {}, "snapshot_id": None}
    return await _hold(bus, sessions, task_id=task_id, approval=approval, decision={"summary": summary}, ttl_s=ttl_s)


async def _hold(bus: Bus, sessions: async_sessionmaker[AsyncSession], *, task_id: str, approval: dict[str, Any],
                decision: dict[str, Any], ttl_s: float) -> str:
    """Store the approval, park the task on it, and say so on the bus; returns its id."""
    now = datetime.now(timezone.utc)
    async with sessions.begin() as session:
        task = await queries.get_task(session, task_id=task_id)
        row = {**approval, "id": new_id(), "task_id": task_id, "status": "pending", "created_at": now,
               "requested_by": task.requested_by if task else None, "expires_at": now + timedelta(seconds=ttl_s)}
        await queries.add_approval(session, approval=row)
        pending = {"approval": row["id"], "call": row["tool_call"], "decision": decision}
        await queries.await_approval(session, task_id=task_id, pending=pending)
        await queries.add_journal(session, kind="approval.requested", task_id=task_id, detail=pending)
    await bus.publish_approval(row["id"], json.dumps(approval_record(ApprovalRow(**row))).encode(), decided=False)
    return row["id"]


async def send_back(bus: Bus, sessions: async_sessionmaker[AsyncSession], approval: ApprovalRow) -> None:
    """A decided (or expired) approval's task goes back to the queue to act on it."""
    async with sessions.begin() as session:
        requeued = await queries.requeue_parked_task(session, task_id=approval.task_id)
        task = await queries.get_task(session, task_id=approval.task_id)
    if requeued and task is not None:
        await bus.publish_tasks([TaskMessage(task_id=task.id, queue=task.queue, priority=task.priority,
                                                  resumed_by=approval.id)])
    await bus.publish_approval(approval.id, json.dumps(approval_record(approval)).encode(), decided=True)


async def expire_due(bus: Bus, sessions: async_sessionmaker[AsyncSession]) -> int:
    """Expire the pending approvals past their time (a rejection) and send their tasks back."""
    async with sessions.begin() as session:
        expired = await queries.expire_approvals(session, now=datetime.now(timezone.utc))
        for row in expired:
            await queries.add_journal(session, kind="approval.expired", task_id=row.task_id,
                                      detail={"approval": row.id, "call": row.tool_call})
    for row in expired:
        await send_back(bus, sessions, row)
    return len(expired)
