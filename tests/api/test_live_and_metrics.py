"""A task's trace followed live over server-sent events (the steps so far, then each new
step and status from the bus, until it ends), and Prometheus metrics read from the store."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from hybrid_agent.store import queries

NOW = datetime.now(timezone.utc)


def step_row(n: int, *, duration_s: float = 0.7, candidates: int = 3) -> dict:
    return {"n": n, "tool_call": {"tool": "list_dir", "args": {"path": "."}}, "decision": "allow", "policy": None,
            "model": {}, "observation": f"step {n}", "ok": True, "candidates": [{"text": "x"}] * candidates,
            "prompt_tokens": 10, "timings": {}, "started_at": NOW, "duration_s": duration_s}


async def add_task(sessions, task_id: str, status: str) -> None:
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[], tasks=[{
            "id": task_id, "event_id": None, "goal": "g", "status": status, "workspace": None, "queue": "default",
            "requested_by": "alice"}])


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":") and ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_the_trace_streams_the_steps_so_far_then_live_ones_until_the_end(api, sessions):
    await add_task(sessions, "live1", "running")
    async with sessions.begin() as session:
        await queries.add_step(session, task_id="live1", step=step_row(1))
    bus = api.app.state.bus
    done = asyncio.Event()

    async def worker_publishing() -> None:
        # Until the stream has ended: the watcher may subscribe at any moment, and it
        # shows each step once, so the same two traces are simply published again.
        while not done.is_set():
            await bus.publish_trace("live1", json.dumps({"kind": "step", "task_id": "live1", "n": 2, "ok": True,
                                                         "observation": "step 2"}).encode())
            await bus.publish_trace("live1", json.dumps({"kind": "status", "task_id": "live1",
                                                         "status": "succeeded"}).encode())
            await asyncio.sleep(0.05)

    publisher = asyncio.create_task(worker_publishing())
    response = await api.get("/api/tasks/live1/events")
    done.set()
    await publisher
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [(kind, data.get("n", data.get("status"))) for kind, data in parse_sse(response.text)]
    assert events == [("step", 1), ("status", "running"), ("step", 2), ("status", "succeeded")]


async def test_an_ended_task_streams_its_steps_and_status_and_closes(api, sessions):
    await add_task(sessions, "done1", "failed")
    async with sessions.begin() as session:
        await queries.add_step(session, task_id="done1", step=step_row(1))
    events = parse_sse((await api.get("/api/tasks/done1/events")).text)
    assert [(kind, data.get("n", data.get("status"))) for kind, data in events] == [("step", 1), ("status", "failed")]
    assert (await api.get("/api/tasks/nope/events")).status_code == 404
    assert (await api.get("/api/tasks/done1/events", headers={"Authorization": ""})).status_code == 401


async def test_metrics_count_what_the_store_holds(api, sessions):
    await add_task(sessions, "m1", "succeeded")
    await add_task(sessions, "m2", "awaiting_approval")
    async with sessions.begin() as session:
        await queries.add_step(session, task_id="m1", step=step_row(1, duration_s=0.7, candidates=3))
        await queries.add_journal(session, kind="policy.deny", task_id="m1", detail={})
        await queries.add_approval(session, approval={
            "id": "ap1", "task_id": "m2", "step": 1, "status": "approved", "tool_call": {}, "diff": None,
            "risk": "high", "reasons": [], "scores": {}, "snapshot_id": None, "requested_by": "alice",
            "created_at": NOW - timedelta(seconds=30), "expires_at": NOW + timedelta(hours=1), "decided_by": "bob",
            "decided_at": NOW})
        await queries.add_restore(session, restore={
            "snapshot_id": "s1", "task_id": "m1", "step": 1, "reason": "action_failed", "requested_by": None,
            "ok": True, "report": {}, "error": None, "started_at": NOW, "finished_at": NOW})
    response = await api.get("/metrics")
    assert response.status_code == 200
    values = dict(line.rsplit(" ", 1) for line in response.text.splitlines() if not line.startswith("#"))
    assert values['ha_tasks{status="succeeded"}'] == "1" and values['ha_tasks{status="awaiting_approval"}'] == "1"
    assert (values['ha_step_duration_seconds_bucket{le="0.5"}'], values['ha_step_duration_seconds_bucket{le="1"}'],
            values["ha_step_duration_seconds_count"]) == ("0", "1", "1")
    assert (values['ha_step_candidates_bucket{le="2"}'], values['ha_step_candidates_bucket{le="4"}']) == ("0", "1")
    assert values['ha_approvals{status="approved"}'] == "1"
    assert (values['ha_approval_decision_seconds_bucket{le="10"}'],
            values['ha_approval_decision_seconds_bucket{le="60"}']) == ("0", "1")
    assert values['ha_policy_decisions_total{decision="deny"}'] == "1"
    assert values['ha_rollbacks_total{reason="action_failed"}'] == "1"
    assert (await api.get("/metrics", headers={"Authorization": ""})).status_code == 401
