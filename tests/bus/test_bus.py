"""The bus on the embedded server and the system one: streams made idempotently, publishes
deduplicated by Nats-Msg-Id, leases kept by heartbeats, transient failures redelivered."""

import asyncio

from hybrid_agent.bus.connection import Bus, ConsumerLimits
from hybrid_agent.bus.consumer import with_heartbeat
from hybrid_agent.bus.messages import Event, TaskMessage


async def test_streams_are_created_idempotently(bus: Bus):
    await bus.ensure_streams()
    await bus.ensure_streams()
    names = {info.config.name for info in await bus.js.streams_info()}
    assert {"EVENTS", "TASKS", "DEAD"} <= names


async def test_an_event_published_twice_is_stored_once(bus: Bus):
    event = Event(source="user", kind="task", payload={"goal": "g"})
    first = await bus.publish_event(event)
    second = await bus.publish_event(event)
    assert not first.duplicate and second.duplicate and second.seq == first.seq
    assert (await bus.js.stream_info("EVENTS")).state.messages == 1


LIMITS = ConsumerLimits(ack_wait_s=30, max_deliver=3)


async def test_workers_share_the_consumers_of_their_queue(bus: Bus):
    await bus.publish_tasks([TaskMessage(task_id=f"t{i}") for i in range(4)])
    first, second = await bus.task_feed(LIMITS), await bus.task_feed(LIMITS)
    stop = asyncio.Event()
    got = [await first.next(stop), await second.next(stop), await first.next(stop), await second.next(stop)]
    assert sorted(TaskMessage.model_validate_json(m.data).task_id for m in got) == ["t0", "t1", "t2", "t3"]
    for msg in got:
        await msg.ack()


async def test_a_nak_with_delay_is_redelivered(bus: Bus):
    await bus.publish_tasks([TaskMessage(task_id="t")])
    feed, stop = await bus.task_feed(LIMITS), asyncio.Event()
    msg = await feed.next(stop)
    await msg.nak(delay=0.2)
    again = await feed.next(stop)
    assert TaskMessage.model_validate_json(again.data).task_id == "t" and again.metadata.num_delivered == 2
    await again.ack()


async def test_heartbeats_keep_the_lease_of_a_long_step(bus: Bus):
    await bus.publish_tasks([TaskMessage(task_id="long")])
    feed = await bus.task_feed(ConsumerLimits(ack_wait_s=1.0, max_deliver=5))
    msg = await feed.next(asyncio.Event())
    # The work outlasts ack_wait three times over; without heartbeats it would be redelivered.
    await with_heartbeat(msg, asyncio.sleep(3.0), interval_s=0.3)
    await msg.ack_sync()
    info = await bus.js.consumer_info("TASKS", "workers-default-normal")
    assert info.num_redelivered == 0 and info.num_ack_pending == 0
