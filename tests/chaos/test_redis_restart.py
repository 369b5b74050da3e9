"""Chaos: Redis, which holds the resource leases, dies and restarts without its data. A task
that needs its resource while Redis is down waits (and says so) instead of acting without
the lease; once Redis is back it takes the lease and runs. The fencing tokens handed out
after the restart are still above those the store saw before it, so tasks on a resource
used before the restart are not refused their writes."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.bus.embedded import free_port
from hybrid_agent.store import queries
from tests.agents.conftest import queue_task
from tests.fakes import FakeAppendOnceLLM
from tests.waiting import eventually

BEFORE = ("before-1", "before-2")


class RedisServer:
    """A private redis-server that keeps nothing on disk: a restart loses every key."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.kill()


async def test_leases_are_taken_again_safely_after_redis_restarts_empty(redis_server, settings, sessions,
                                                                      embedded_bus, tmp_path):
    configured = settings.model_copy(update={"experts": [], "ablation": "llm_only", "redis_url": redis_server.url,
                                             "worker_concurrency": 2})
    worker = Worker(settings=configured, bus=embedded_bus, sessions=sessions, llm=FakeAppendOnceLLM(),
                    sandbox=make_sandbox("rlimit", max_output_chars=1000))
    stop = asyncio.Event()
    job = asyncio.create_task(worker.run(stop))
    try:
        for name in BEFORE:   # each a new holder of the resource: the store has seen two tokens
            await queue_task(sessions, embedded_bus, name, workspace=str(tmp_path / name), resource="host:web1")
            await eventually(lambda: _status_is(sessions, name, "succeeded"), f"{name} ends", 60)

        redis_server.kill()
        await queue_task(sessions, embedded_bus, "during", workspace=str(tmp_path / "during"), resource="host:web1")
        await eventually(lambda: _waiting(sessions, "during"), "it waits for its resource's lease", 60)
        redis_server.start()   # empty: the lease and its token counter are gone
        await eventually(lambda: _status_is(sessions, "during", "succeeded"), "it runs once Redis is back", 60)

        await queue_task(sessions, embedded_bus, "after", workspace=str(tmp_path / "after"), resource="host:web1")
        await eventually(lambda: _status_is(sessions, "after", "succeeded"), "the next task on it runs", 60)
    finally:
        stop.set()
        await job
    async with sessions() as session:
        journal = await queries.journal_for_task(session, task_id="during", event_id=None)
    assert [j.detail for j in journal if j.kind == "task.waiting_for_resource"] == [{"resource": "host:web1"}]
    assert not [j for j in journal if j.kind == "task.fenced_out"]
    assert [(tmp_path / name / "count.txt").read_text() for name in (*BEFORE, "during", "after")] == ["ran\n"] * 4


async def _status_is(sessions, task_id: str, status: str) -> bool:
    async with sessions() as session:
        return (await queries.get_task(session, task_id=task_id)).status == status


async def _waiting(sessions, task_id: str) -> bool:
    async with sessions() as session:
        task = await queries.get_task(session, task_id=task_id)
    return task.status == "queued" and bool(task.waiting_for) and "host:web1" in task.waiting_for
