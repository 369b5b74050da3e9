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
