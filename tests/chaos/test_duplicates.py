"""Chaos: every message delivered twice, past JetStream's dedup window (each event and
each task message published again under another message id), to two workers. Every task
still ends exactly once, and its action ran once."""

from __future__ import annotations

import asyncio

from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.bus import subjects
from hybrid_agent.bus.messages import Event, TaskMessage, new_id
from hybrid_agent.store import queries
from hybrid_agent.triggers.router import Router
from tests.chaos.test_nats_restart import FakeAppendOnceLLM, _all_ended
from tests.waiting import eventually

TASKS = 10


async def publish_twice(bus, subject: str, payload: bytes, dedup_key: str) -> None:
    for copy in (dedup_key, f"{dedup_key}:again"):   # two ids: JetStream keeps both
        await bus.js.publish(subject, payload, headers={"Nats-Msg-Id": copy})


async def test_every_event_and_task_message_twice_still_runs_each_task_once(settings, sessions, embedded_bus):
    bus = embedded_bus
    configured = settings.model_copy(update={"experts": [], "ablation": "llm_only"})
    stop = asyncio.Event()
    workers = [Worker(settings=configured, bus=bus, sessions=sessions, llm=FakeAppendOnceLLM(),
                      sandbox=make_sandbox("rlimit", max_output_chars=1000)) for _ in range(2)]
    jobs = [asyncio.create_task(Router(bus, sessions).run(stop)), *(asyncio.create_task(w.run(stop)) for w in workers)]
    ids = [new_id() for _ in range(TASKS)]
    try:
        for task_id in ids:
            event = Event(source="user", kind="task", payload={"goal": "count once", "task_id": task_id})
            await publish_twice(bus, subjects.event_subject("user", "task"), event.model_dump_json().encode(),
                                event.dedup_key)
            message = TaskMessage(task_id=task_id)   # as if the router's publish were repeated too
            await publish_twice(bus, subjects.task_subject("default", "normal"), message.model_dump_json().encode(),
                                message.dedup_key + ":dup")
        await eventually(lambda: _all_ended(sessions, ids), "every task ends", 120)
        await eventually(lambda: _drained(bus), "every copy is delivered and settled", 60)
    finally:
        stop.set()
        await asyncio.gather(*jobs)
    async with sessions() as session:
        statuses = [(await queries.get_task(session, task_id=task_id)).status for task_id in ids]
        journals = [await queries.journal_for_task(session, task_id=task_id, event_id=None) for task_id in ids]
        assert await queries.count_tasks(session) == TASKS
    assert statuses == ["succeeded"] * TASKS
    assert [sum(j.kind == "task.finished" for j in journal) for journal in journals] == [1] * TASKS
    info = await bus.js.consumer_info(subjects.TASKS_STREAM, subjects.workers_durable("default", "normal"))
    assert info.delivered.consumer_seq >= 3 * TASKS   # the router's message and the two copies, each delivered
    runs = [(configured.workspaces_dir / task_id / "count.txt").read_text() for task_id in ids]
    assert runs == ["ran\n"] * TASKS


async def _drained(bus) -> bool:
    info = await bus.js.consumer_info(subjects.TASKS_STREAM, subjects.workers_durable("default", "normal"))
    return info.num_pending == 0 and info.num_ack_pending == 0
