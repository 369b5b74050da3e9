"""The store keeps events, tasks and steps on SQLite and PostgreSQL alike, and every write
that a redelivery can repeat is idempotent."""

import asyncio

from hybrid_agent.store import queries
from hybrid_agent.store.db import migrate
from hybrid_agent.store.tables import utcnow


def event(event_id: str, key: str) -> dict:
    return {"id": event_id, "dedup_key": key, "source": "user", "kind": "task", "payload": {}, "created_at": utcnow()}


def task(task_id: str, event_id: str) -> dict:
    return {"id": task_id, "event_id": event_id, "goal": "g", "status": "queued", "workspace": None,
            "queue": "default", "requested_by": "test"}


async def test_migrations_can_run_twice(database_url, sessions):
    await asyncio.to_thread(migrate, database_url)
    async with sessions() as session:
        assert await queries.count_tasks(session) == 0


async def test_the_same_event_stored_twice_is_one_event_and_one_task(sessions):
    for _ in range(2):
        async with sessions.begin() as session:
            queued = await queries.insert_events_and_tasks(session, events=[event("e1", "k1")], tasks=[task("t1", "e1")])
        assert [t.id for t in queued] == ["t1"]
    async with sessions() as session:
        assert await queries.count_tasks(session) == 1


async def test_an_event_with_a_known_dedup_key_under_a_new_id_creates_no_task(sessions):
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[event("e1", "k1")], tasks=[task("t1", "e1")])
    async with sessions.begin() as session:
        queued = await queries.insert_events_and_tasks(session, events=[event("e2", "k1")], tasks=[task("t2", "e2")])
    assert queued == []
    async with sessions() as session:
        assert await queries.count_tasks(session) == 1


async def test_a_finished_task_is_not_started_again(sessions):
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[event("e1", "k1")], tasks=[task("t1", "e1")])
    async with sessions.begin() as session:
        started = await queries.start_task(session, task_id="t1", isolation="rlimit", workspace="/tmp/x")
        assert started.status == "running" and started.deliveries == 1
    async with sessions.begin() as session:
        await queries.finish_task(session, task_id="t1", status="succeeded", result={"summary": "s"}, error=None)
    async with sessions.begin() as session:
        assert await queries.start_task(session, task_id="t1", isolation="rlimit", workspace="/tmp/x") is None
        queued = await queries.insert_events_and_tasks(session, events=[event("e1", "k1")], tasks=[task("t1", "e1")])
    assert queued == []


async def test_a_step_journaled_twice_keeps_the_first(sessions):
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[event("e1", "k1")], tasks=[task("t1", "e1")])
    for observation in ("first", "second"):
        async with sessions.begin() as session:
            await queries.add_step(session, task_id="t1", step={
                "n": 1, "tool_call": {"tool": "finish"}, "decision": "allow", "observation": observation, "ok": True,
                "candidates": [], "prompt_tokens": 1, "timings": {}, "started_at": utcnow(), "duration_s": 0.1})
    async with sessions() as session:
        steps = await queries.get_steps(session, task_id="t1")
    assert [s.observation for s in steps] == ["first"]


async def test_several_tasks_start_and_finish_together_as_each_would_alone(sessions):
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[event(f"e{i}", f"k{i}") for i in range(3)],
                                              tasks=[task(f"t{i}", f"e{i}") for i in range(3)])
        await queries.finish_task(session, task_id="t2", status="cancelled", result=None, error=None)
    workspaces = {"t0": "/w/t0", "t1": "/w/t1", "t2": "/w/t2", "unknown": "/w/u"}
    async with sessions.begin() as session:
        # t2 ended and "unknown" was never stored: duplicate deliveries, for the caller to drop.
        assert await queries.start_tasks(session, workspaces=workspaces, isolation="rlimit") == {"t0", "t1"}
    async with sessions() as session:
        first_start = (await queries.get_task(session, task_id="t0")).started_at
    async with sessions.begin() as session:   # t0 redelivered while running
        assert await queries.start_tasks(session, workspaces={"t0": "/w/t0"}, isolation="rlimit") == {"t0"}
        await queries.add_steps(session, steps=[
            {"task_id": t, "n": 1, "tool_call": {"tool": "finish"}, "decision": "allow", "observation": t, "ok": True,
             "candidates": [], "prompt_tokens": 1, "timings": {}, "started_at": utcnow(), "duration_s": 0.1}
            for t in ("t0", "t1")])
        await queries.finish_tasks(session, finished=[
            {"id": "t0", "status": "succeeded", "result": {"summary": "s0"}, "error": None},
            {"id": "t1", "status": "failed", "result": None, "error": "boom"}])
    async with sessions() as session:
        t0, t1, t2 = [await queries.get_task(session, task_id=t) for t in ("t0", "t1", "t2")]
        steps = [s.observation for t in ("t0", "t1") for s in await queries.get_steps(session, task_id=t)]
    assert (t0.status, t0.workspace, t0.isolation, t0.deliveries, t0.result) == ("succeeded", "/w/t0", "rlimit", 2,
                                                                                   {"summary": "s0"})
    assert t0.started_at == first_start and t0.finished_at >= t0.started_at   # the first start is kept
    assert (t1.status, t1.workspace, t1.deliveries, t1.error, t1.result) == ("failed", "/w/t1", 1, "boom", None)
    assert (t2.status, t2.deliveries, t2.started_at, t2.workspace) == ("cancelled", 0, None, None)
    assert steps == ["t0", "t1"]


async def test_a_batch_of_tasks_of_different_shapes_keeps_every_field_of_each(sessions):
    # A routed batch mixes a submission (no rule fields) with rules' tasks, in either order.
    rule_task = {"rule": "disk", "template": "disk_pressure", "params": {"path": "/srv"}, "priority": 2,
                 "dry_run": True, "budgets": {"max_steps": 3}, "resource": "host:a", "rule_concurrency": 1}
    async with sessions.begin() as session:
        queued = await queries.insert_events_and_tasks(
            session, events=[event(f"e{i}", f"k{i}") for i in range(3)],
            tasks=[task("t0", "e0"), {**task("t1", "e1"), **rule_task}, task("t2", "e2")])
    assert sorted((t.id, t.priority) for t in queued) == [("t0", 0), ("t1", 2), ("t2", 0)]
    async with sessions() as session:
        t0, t1, t2 = [await queries.get_task(session, task_id=t) for t in ("t0", "t1", "t2")]
    assert {key: getattr(t1, key) for key in rule_task} == rule_task
    assert (t0.rule, t0.priority, t0.dry_run, t2.params, t2.resource) == (None, 0, False, None, None)
