"""The router turns events into stored, queued tasks on TASKS, once per event."""

import asyncio

import pytest

from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.consumer import fetch_batches
from hybrid_agent.bus.messages import Event, TaskMessage
from hybrid_agent.store import queries
from hybrid_agent.triggers.router import Router
from tests.conftest import default_lane


@pytest.fixture
async def router(bus, sessions):
    router = Router(bus, sessions)
    yield router
    # A journal flush still pending would hold its transaction open past the test (and
    # PostgreSQL's DROP SCHEMA at teardown would wait on it forever).
    await router.journal.close()


async def route_everything(router: Router, bus: Bus, expected: int) -> None:
    sub = await bus.router_subscription()
    stop = asyncio.Event()
    seen = 0
    async for batch in fetch_batches(sub, batch=100, stop=stop, wait_s=1.0):
        await router.handle(batch)
        seen += len(batch)
        if seen >= expected:
            stop.set()


async def queued_task_ids(bus: Bus) -> list[str]:
    sub = await default_lane(bus)
    msgs = await sub.fetch(100, timeout=1)
    for msg in msgs:
        await msg.ack()
    return [TaskMessage.model_validate_json(m.data).task_id for m in msgs]


async def test_publishing_the_same_event_twice_creates_one_task(bus, sessions, router):
    event = Event(source="user", kind="task", payload={"goal": "tidy up"})
    await bus.publish_event(event)
    await bus.publish_event(event)
    await route_everything(router, bus, expected=1)
    async with sessions() as session:
        assert await queries.count_tasks(session) == 1
    assert len(await queued_task_ids(bus)) == 1


async def test_a_task_goes_to_its_queue_in_the_band_of_its_priority(bus, sessions, router):
    event = Event(source="user", kind="task", payload={"goal": "page", "queue": "ci", "priority": 8})
    await bus.publish_event(event)
    await route_everything(router, bus, expected=1)
    message = await bus.js.get_last_msg("TASKS", "ha.tasks.ci.urgent")
    routed = TaskMessage.model_validate_json(message.data)
    async with sessions() as session:
        (task,) = await queries.tasks_of_event(session, event_id=event.id)
    assert (routed.task_id, routed.queue, routed.priority) == (task.id, "ci", 8)
    assert (task.queue, task.priority) == ("ci", 8)


async def test_a_redelivered_event_republishes_its_task_once(bus, sessions, router):
    event = Event(source="user", kind="task", payload={"goal": "tidy up"})
    await bus.publish_event(event)
    sub = await bus.router_subscription()
    (msg,) = await sub.fetch(1, timeout=2)
    await router.route([(msg, event)])  # stored and published, but the ack never happened
    await msg.nak()
    await route_everything(router, bus, expected=1)
    async with sessions() as session:
        assert await queries.count_tasks(session) == 1
    assert len(await queued_task_ids(bus)) == 1


async def test_a_malformed_event_is_journaled_and_dropped(bus, sessions, router):
    await bus.js.publish("ha.events.user.task", b"{not json")
    await route_everything(router, bus, expected=1)
    async with sessions() as session:
        incidents = await queries.journal_of_kind(session, kind="incident.malformed_event")
    assert len(incidents) == 1 and incidents[0].detail["data"] == "{not json"
