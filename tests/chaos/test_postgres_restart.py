"""Chaos: PostgreSQL crashes and restarts while tasks run. The workers pause and retry;
no task is failed or dead-lettered for it, each task ends exactly once, and no action
happened twice (an action whose step could not be journaled is undone from the snapshot
journaled before it, then done again)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate
from hybrid_agent.triggers.router import Router
from tests.chaos.postgres_server import PostgresServer
from tests.conftest import admin_client
from tests.fakes import FakeAppendOnceLLM
from tests.waiting import eventually

TASKS = 12


class FakeSlowAppendOnceLLM(FakeAppendOnceLLM):
    """Takes a moment per answer, as a model does, so tasks are mid-flight when the store goes."""

    name = "fake-slow-append-once"

    def propose(self, messages, schema, k, *, exclude=()):
        time.sleep(0.2)
        return super().propose(messages, schema, k)


@pytest.fixture
async def crashable_store():
    server = PostgresServer()
    server.init()
    server.start()
    await asyncio.to_thread(migrate, server.url)
    engine = make_engine(server.url)
    yield server, make_sessionmaker(engine)
    await engine.dispose()
    server.close()


async def test_a_postgres_crash_while_tasks_run_fails_nothing_and_repeats_nothing(crashable_store, embedded_bus,
                                                                                 settings, caplog):
    server, sessions = crashable_store
    configured = settings.model_copy(update={"experts": [], "ablation": "llm_only", "database_url": server.url,
                                             "worker_concurrency": 2, "ack_wait_s": 10.0})
    stop = asyncio.Event()
    worker = Worker(settings=configured, bus=embedded_bus, sessions=sessions, llm=FakeSlowAppendOnceLLM(),
                    sandbox=make_sandbox("rlimit", max_output_chars=1000))
    jobs = [asyncio.create_task(Router(embedded_bus, sessions).run(stop)), asyncio.create_task(worker.run(stop))]
    ids: list[str] = []
    try:
        async with admin_client(configured, sessions, embedded_bus) as api:
            for _ in range(TASKS):
                created = await api.post("/api/tasks", json={"goal": "count once"})
                assert created.status_code == 201, created.text
                ids.append(created.json()["id"])
            await eventually(lambda: _ended(sessions, ids, at_least=2), "a few tasks end", 60)
            with caplog.at_level(logging.WARNING, logger="hybrid_agent.agents.worker"):
                server.crash()
                await eventually(lambda: "the store is unreachable" in caplog.text, "a worker notices", 30)
                server.start()
            await eventually(lambda: _ended(sessions, ids, at_least=TASKS), "every task ends", 180)
    finally:
        stop.set()
        await asyncio.gather(*jobs, return_exceptions=True)
    async with sessions() as session:
        tasks = [await queries.get_task(session, task_id=task_id) for task_id in ids]
        journals = [await queries.journal_for_task(session, task_id=task_id, event_id=None) for task_id in ids]
    assert [task.status for task in tasks] == ["succeeded"] * TASKS
    assert [sum(j.kind == "task.finished" for j in journal) for journal in journals] == [1] * TASKS
    runs = [(configured.workspaces_dir / task_id / "count.txt").read_text() for task_id in ids]
    assert runs == ["ran\n"] * TASKS


async def _ended(sessions, ids: list[str], *, at_least: int) -> bool:
    try:
        async with sessions() as session:
            statuses = [(await queries.get_task(session, task_id=task_id)).status for task_id in ids]
    except Exception:   # the store is down: not yet
        return False
    return sum(status in queries.TERMINAL for status in statuses) >= at_least
