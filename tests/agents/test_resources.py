"""One task at a time acts on a resource across the cluster: a second task on it waits
(and says so), and a worker whose lease passed to a newer holder cannot write anything
more for its task (fencing tokens checked by the store)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import redis.asyncio as aioredis

from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.bus.leases import RedisLease
from hybrid_agent.models.llm.base import Candidate, Proposal
from hybrid_agent.store import queries
from tests.agents.conftest import queue_task
from tests.conftest import REDIS_URL
from tests.waiting import eventually
from tests.worker_support import finished


def answer(call: dict) -> Proposal:
    return Proposal(candidates=[Candidate(text=json.dumps(call), parsed=call, logprob=-1.0, tokens=5)],
                    prompt_tokens=10, seconds=0.0)


class FakeOneFileLLM:
    """The LLM boundary: writes done.txt in the workspace it is asked about, then finishes;
    before its first answer it runs ``first`` (the test's hook)."""

    name = "fake-one-file"

    def __init__(self, first=lambda: None) -> None:
        self.first, self.calls = first, 0

    def propose(self, messages, schema, k, *, exclude=()):
        self.calls += 1
        if self.calls == 1:
            self.first()
        allowed = json.dumps(schema)
        if '"write_file"' in allowed:
            return answer({"tool": "write_file", "args": {"path": "done.txt", "content": "done"}})
        if '"finish"' in allowed:
            return answer({"tool": "finish", "args": {"summary": "done", "success": True}})
        return answer({"tool": "list_dir", "args": {"path": "."}})


def worker(settings, bus, sessions, llm) -> Worker:
    return Worker(settings=settings.model_copy(update={"experts": [], "ablation": "llm_only"}), bus=bus,
                  sessions=sessions, llm=llm, sandbox=make_sandbox("rlimit", max_output_chars=1000))


async def journal_kinds(sessions, task_id: str) -> list[str]:
    async with sessions() as session:
        return [j.kind for j in await queries.journal_for_task(session, task_id=task_id, event_id=None)]


@pytest.mark.parametrize("coordination", ["redis", "in-process"])
async def test_two_tasks_on_one_resource_run_one_after_the_other(settings, sessions, embedded_bus, tmp_path,
                                                                 coordination):
    configured = settings.model_copy(update={"redis_url": REDIS_URL if coordination == "redis" else None})
    resource = f"host:web-{tmp_path.name}"
    for task_id in ("a", "b"):
        await queue_task(sessions, embedded_bus, task_id, workspace=str(tmp_path / task_id), resource=resource)
    gate = threading.Event()   # the first task to hold the resource waits here until the other waits for it
    workers = [worker(configured, embedded_bus, sessions, FakeOneFileLLM(first=lambda: gate.wait(20)))
               for _ in range(2)]
    stop = asyncio.Event()
    running = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        async def someone_waits() -> bool:
            return any(["task.waiting_for_resource" in await journal_kinds(sessions, t) for t in ("a", "b")])
        await eventually(someone_waits, "the second task waits for the resource", 20)
        gate.set()
        await eventually(lambda: _both(sessions), "both tasks finish", 30)
    finally:
        gate.set()
        stop.set()
        await asyncio.gather(*running)
    waited = "a" if "task.waiting_for_resource" in await journal_kinds(sessions, "a") else "b"
    first = "b" if waited == "a" else "a"
    async with sessions() as session:
        first_task = await queries.get_task(session, task_id=first)
        later_steps = await queries.get_steps(session, task_id=waited)
    assert first_task.status == "succeeded"
    assert min(step.started_at for step in later_steps) >= first_task.finished_at


async def _both(sessions) -> bool:
    return await finished(sessions, "a") and await finished(sessions, "b")


async def test_a_worker_whose_lease_passed_on_writes_nothing_more(settings, sessions, embedded_bus, tmp_path):
    configured = settings.model_copy(update={"redis_url": REDIS_URL})
    resource = f"repo:{tmp_path.name}"
    key = f"ha:resource:{resource}"
    await queue_task(sessions, embedded_bus, "t1", workspace=str(tmp_path / "ws"), resource=resource)
    loop = asyncio.get_running_loop()
    thief = RedisLease(REDIS_URL, key=key, holder="thief", ttl_s=30)
    redis = aioredis.from_url(REDIS_URL)

    async def steal() -> None:
        """As if the worker had paused past its lease: it expires, another takes it and writes."""
        await redis.delete(key)
        token = await thief.acquire_fenced()
        async with sessions.begin() as session:
            await queries.check_fence(session, resource=resource, token=token)

    llm = FakeOneFileLLM(first=lambda: asyncio.run_coroutine_threadsafe(steal(), loop).result(10))
    paused = worker(configured, embedded_bus, sessions, llm)
    stop = asyncio.Event()
    running = asyncio.create_task(paused.run(stop))
    try:
        await eventually(lambda: _kind_in(sessions, "t1", "task.fenced_out"), "the worker is fenced out", 20)
    finally:
        stop.set()
        await running
        await thief.release()
        await thief.close()
        await redis.aclose()
    async with sessions() as session:
        steps = await queries.get_steps(session, task_id="t1")
        task = await queries.get_task(session, task_id="t1")
    assert steps == [] and task.status == "running" and task.finished_at is None


async def _kind_in(sessions, task_id: str, kind: str) -> bool:
    return kind in await journal_kinds(sessions, task_id)


async def test_the_store_refuses_a_stale_fencing_token(sessions):
    async with sessions.begin() as session:
        await queries.check_fence(session, resource="host:a", token=5)
        await queries.check_fence(session, resource="host:a", token=5)   # the same holder writes again
    with pytest.raises(queries.FencedOut, match="token 4 is stale"):
        async with sessions.begin() as session:
            await queries.check_fence(session, resource="host:a", token=4)
    async with sessions.begin() as session:
        await queries.check_fence(session, resource="host:a", token=6)
        await queries.check_fence(session, resource="host:b", token=1)   # resources are apart
