"""Chaos: NATS restarts in the middle of a burst of submissions. Submissions made while it
is down still succeed (the outbox keeps them); after it returns, every submitted task
reaches its end exactly once and its action ran once."""

from __future__ import annotations

import asyncio

from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.store import queries
from hybrid_agent.triggers.outbox import Outbox
from hybrid_agent.triggers.router import Router
from tests.conftest import admin_client
from tests.fakes import FakeAppendOnceLLM
from tests.waiting import eventually

TASKS = 24


async def test_a_nats_restart_during_a_burst_loses_nothing_and_does_nothing_twice(settings, sessions,
                                                                                 restartable_nats):
    server, bus = restartable_nats
    configured = settings.model_copy(update={"experts": [], "ablation": "llm_only", "ack_wait_s": 5.0})
    stop = asyncio.Event()
    worker = Worker(settings=configured, bus=bus, sessions=sessions, llm=FakeAppendOnceLLM(),
                    sandbox=make_sandbox("rlimit", max_output_chars=1000))
    jobs = [asyncio.create_task(Router(bus, sessions).run(stop)), asyncio.create_task(worker.run(stop)),
            asyncio.create_task(Outbox(bus, sessions).run(stop, interval_s=0.5))]
    ids: list[str] = []
    try:
        async with admin_client(configured, sessions, bus) as api:
            async def submit(n: int) -> None:
                for _ in range(n):
                    created = await api.post("/api/tasks", json={"goal": "count once"})
                    assert created.status_code == 201, created.text
                    ids.append(created.json()["id"])
            await submit(TASKS // 3)
            server.stop()                      # NATS goes away mid-burst
            await submit(TASKS // 3)           # still accepted: they wait in the outbox
            server.start()
            await submit(TASKS - 2 * (TASKS // 3))
            await eventually(lambda: _all_ended(sessions, ids), "every task ends", 120)
    finally:
        stop.set()
        await asyncio.gather(*jobs, return_exceptions=True)
    async with sessions() as session:
        tasks = [await queries.get_task(session, task_id=task_id) for task_id in ids]
        finished = [j for task_id in ids for j in await queries.journal_for_task(session, task_id=task_id,
                                                                                 event_id=None)
                    if j.kind == "task.finished"]
    assert [task.status for task in tasks] == ["succeeded"] * TASKS
    assert len(finished) == TASKS
    runs = [(configured.workspaces_dir / task_id / "count.txt").read_text() for task_id in ids]
    assert runs == ["ran\n"] * TASKS


async def _all_ended(sessions, ids: list[str]) -> bool:
    async with sessions() as session:
        for task_id in ids:
            task = await queries.get_task(session, task_id=task_id)
            if task is None or task.status not in queries.TERMINAL:   # None: not routed yet
                return False
    return True
