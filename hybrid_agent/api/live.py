"""A task's trace as server-sent events: the steps so far from the store, then each new
step and status change as the worker publishes it, until the task ends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
from fastapi import Request

from hybrid_agent.store import queries
from hybrid_agent.store.tables import StepRow

KEEPALIVE_S = 15.0   # a comment line this often keeps proxies from closing a quiet stream


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def step_event(row: StepRow) -> dict[str, Any]:
    return {"kind": "step", "task_id": row.task_id, "n": row.n, "tool_call": row.tool_call, "ok": row.ok,
            "decision": row.decision, "observation": row.observation[:2000], "duration_s": row.duration_s,
            "snapshot_id": row.snapshot_id, "rollback": row.rollback}


async def task_events(request: Request, task_id: str) -> AsyncIterator[str]:
    state = request.app.state
    # Watch before reading the store: a step published in between is then seen, not lost.
    async with state.bus.watch_traces(task_id) as live:
        async with state.sessions() as session:
            task = await queries.get_task(session, task_id=task_id)
            steps = await queries.get_steps(session, task_id=task_id)
        shown = 0
        for row in steps:
            shown = row.n
            yield sse("step", step_event(row))
        status = task.status if task else "unknown"
        yield sse("status", {"kind": "status", "task_id": task_id, "status": status})
        while status not in queries.TERMINAL and not await request.is_disconnected():
            try:
                event = json.loads((await live.next_msg(timeout=KEEPALIVE_S)).data)
            except nats.errors.TimeoutError:
                yield ": keepalive\n\n"
                event = await _status_now(state.sessions, task_id, status)   # a missed status change
                if event is None:
                    continue
            if event.get("kind") == "status":
                status = event["status"]
                yield sse("status", event)
            elif event.get("n", 0) > shown:
                shown = event["n"]
                yield sse("step", event)


async def _status_now(sessions, task_id: str, shown: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        task = await queries.get_task(session, task_id=task_id)
    if task is None or task.status == shown:
        return None
    return {"kind": "status", "task_id": task_id, "status": task.status}
