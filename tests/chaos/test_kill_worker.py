"""Chaos: a worker process killed with SIGKILL in the middle of an action. Its task's
message is redelivered after the ack wait; the next worker process rolls the half-done
action back (from the snapshot journaled before it ran), does not repeat the completed
steps, and finishes: every side effect happened once, and the task ended once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from hybrid_agent.bus.connection import Bus
from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate
from tests.agents.conftest import queue_task
from tests.conftest import REDIS_URL
from tests.waiting import eventually

REPO = Path(__file__).parents[2]


def worker_process(data_dir: Path, database_url: str, nats_url: str, *, hang: bool) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.chaos.worker_process", str(data_dir), database_url,
                             nats_url, REDIS_URL, "1" if hang else "0"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


async def test_a_worker_killed_mid_action_is_rolled_back_and_resumed_once(tmp_path, embedded_nats):
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await asyncio.to_thread(migrate, database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    workspace, log = tmp_path / "ws", tmp_path / "ws" / "log.txt"
    bus = await Bus.connect(embedded_nats)
    await queue_task(sessions, bus, "t1", workspace=str(workspace))
    killed = worker_process(tmp_path / "data", database_url, embedded_nats, hang=True)
    survivor = None
    try:
        # The second append has happened and its action hangs: the worker dies mid-action.
        await eventually(lambda: log.exists() and log.read_text() == "a\nb\n", "the worker is mid-action", 60)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        survivor = worker_process(tmp_path / "data", database_url, embedded_nats, hang=False)
        await eventually(lambda: _ended(sessions), "another worker finishes the task", 90)
    finally:
        for process in (killed, survivor):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
        await bus.close()
    async with sessions() as session:
        task = await queries.get_task(session, task_id="t1")
        steps = await queries.get_steps(session, task_id="t1")
        restores = await queries.list_restores(session, snapshot_id=None)
        journal = await queries.journal_for_task(session, task_id="t1", event_id=None)
    await engine.dispose()
    assert task.status == "succeeded" and task.result["summary"] == "a and b appended"
    assert log.read_text() == "a\nb\n"   # the killed append was undone, then done once
    assert [step.n for step in steps] == sorted({step.n for step in steps})
    assert [r.reason for r in restores] == ["redelivery"]
    assert [j.detail["deliveries"] for j in journal if j.kind == "task.delivered"] == [1, 2]
    assert sum(j.kind == "task.finished" for j in journal) == 1


async def _ended(sessions) -> bool:
    async with sessions() as session:
        return (await queries.get_task(session, task_id="t1")).status in queries.TERMINAL
