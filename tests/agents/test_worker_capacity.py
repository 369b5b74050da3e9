"""What a worker takes on: up to ``worker_concurrency`` tasks at once (never more), only the
queues it serves, and the most urgent waiting task first."""

from __future__ import annotations

import asyncio
import threading

from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.store import queries
from tests.agents.conftest import queue_task
from tests.fakes import FakeAppendOnceLLM
from tests.waiting import eventually


class FakeCountingSandbox:
    """The rlimit sandbox, whose commands first call ``hold`` (a barrier, a gate); it
    records how many run at once, and the most that ever did."""

    def __init__(self, hold) -> None:
        self.inner = make_sandbox("rlimit", max_output_chars=1000)
        self.name, self.isolation = self.inner.name, self.inner.isolation
        self.hold = hold
        self.lock = threading.Lock()
        self.running = self.most = 0

    def run(self, argv, *, cwd, timeout_s):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.hold()
            return self.inner.run(argv, cwd=cwd, timeout_s=timeout_s)
        finally:
            with self.lock:
                self.running -= 1


async def run_until(worker: Worker, done) -> None:
    stop = asyncio.Event()
    job = asyncio.create_task(worker.run(stop))
    try:
        await eventually(done, "the tasks end", 120)
    finally:
        stop.set()
        await job


async def statuses(sessions, ids: list[str]) -> list[str]:
    async with sessions() as session:
        return [(await queries.get_task(session, task_id=task_id)).status for task_id in ids]


def configured(settings, **overrides):
    return settings.model_copy(update={"experts": [], "ablation": "llm_only", **overrides})


async def test_a_worker_runs_up_to_its_concurrency_and_never_more(settings, sessions, embedded_bus, tmp_path):
    # Two meet at the barrier (it breaks after 30 s if they never run together).
    sandbox = FakeCountingSandbox(threading.Barrier(2, timeout=30).wait)
    worker = Worker(settings=configured(settings, worker_concurrency=2), bus=embedded_bus, sessions=sessions,
                    llm=FakeAppendOnceLLM(), sandbox=sandbox)
    ids = [f"t{i}" for i in range(4)]
    for task_id in ids:
        await queue_task(sessions, embedded_bus, task_id, workspace=str(tmp_path / task_id))
    await run_until(worker, lambda: _all_ended(sessions, ids))
    assert await statuses(sessions, ids) == ["succeeded"] * 4
    assert sandbox.most == 2   # two met at the barrier, and no third ever ran beside them
    assert [(tmp_path / task_id / "count.txt").read_text() for task_id in ids] == ["ran\n"] * 4


async def test_a_worker_serves_only_its_queues(settings, sessions, embedded_bus, tmp_path):
    worker = Worker(settings=configured(settings, worker_queues=["ci"]), bus=embedded_bus, sessions=sessions,
                    llm=FakeAppendOnceLLM(), sandbox=make_sandbox("rlimit", max_output_chars=1000))
    await queue_task(sessions, embedded_bus, "for-default", workspace=str(tmp_path / "d"))
    await queue_task(sessions, embedded_bus, "for-ci", workspace=str(tmp_path / "c"), queue="ci")
    await run_until(worker, lambda: _all_ended(sessions, ["for-ci"]))
    assert await statuses(sessions, ["for-ci", "for-default"]) == ["succeeded", "queued"]


async def test_the_most_urgent_waiting_task_starts_first(settings, sessions, embedded_bus, tmp_path):
    worker = Worker(settings=configured(settings), bus=embedded_bus, sessions=sessions, llm=FakeAppendOnceLLM(),
                    sandbox=make_sandbox("rlimit", max_output_chars=1000))
    for task_id, priority in [("routine", 0), ("important", 5), ("page", 9)]:
        await queue_task(sessions, embedded_bus, task_id, workspace=str(tmp_path / task_id), priority=priority)
    await run_until(worker, lambda: _all_ended(sessions, ["routine", "important", "page"]))
    async with sessions() as session:
        tasks = [await queries.get_task(session, task_id=t) for t in ("routine", "important", "page")]
    assert [t.id for t in sorted(tasks, key=lambda t: t.started_at)] == ["page", "important", "routine"]


async def _all_ended(sessions, ids: list[str]) -> bool:
    return all(status in queries.TERMINAL for status in await statuses(sessions, ids))


async def test_a_rule_limit_caps_its_running_tasks_and_the_rest_say_what_they_wait_for(settings, sessions,
                                                                                       embedded_bus, tmp_path):
    gate = threading.Event()
    sandbox = FakeCountingSandbox(lambda: gate.wait(timeout=30))
    worker = Worker(settings=configured(settings, worker_concurrency=3), bus=embedded_bus, sessions=sessions,
                    llm=FakeAppendOnceLLM(), sandbox=sandbox)
    ids = ["r1", "r2", "r3"]
    for task_id in ids:
        await queue_task(sessions, embedded_bus, task_id, workspace=str(tmp_path / task_id), rule="restart-web",
                         rule_concurrency=2)
    stop = asyncio.Event()
    job = asyncio.create_task(worker.run(stop))
    try:
        await eventually(lambda: sandbox.running == 2, "two of the rule's tasks run", 60)
        await eventually(lambda: _waiting_tasks(sessions, ids), "the third says what it waits for", 60)
        waiting = await _waiting_tasks(sessions, ids)
        assert len(waiting) == 1 and "rule restart-web" in waiting[0].waiting_for
        assert waiting[0].status == "queued"
        gate.set()
        await eventually(lambda: _all_ended(sessions, ids), "every task ends", 120)
    finally:
        stop.set()
        await job
    assert await statuses(sessions, ids) == ["succeeded"] * 3
    assert sandbox.most == 2
    async with sessions() as session:
        tasks = [await queries.get_task(session, task_id=task_id) for task_id in ids]
        journal = [j for task_id in ids for j in await queries.journal_for_task(session, task_id=task_id,
                                                                                event_id=None)]
    assert [t.waiting_for for t in tasks] == [None] * 3   # cleared when it started
    assert [j.detail for j in journal if j.kind == "task.waiting_for_rule_slot"] == [{"rule": "restart-web",
                                                                                      "limit": 2}]


async def _waiting_tasks(sessions, ids: list[str]) -> list:
    async with sessions() as session:
        tasks = [await queries.get_task(session, task_id=task_id) for task_id in ids]
    return [task for task in tasks if task.waiting_for]
