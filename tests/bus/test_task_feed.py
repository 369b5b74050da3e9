"""The task feed: a worker takes the most urgent waiting task of the queues it serves; tasks
of other queues wait in the stream for workers that serve them."""

import asyncio

from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError
import pytest

from hybrid_agent.bus import subjects
from hybrid_agent.bus.connection import Bus, ConsumerLimits
from hybrid_agent.bus.messages import TaskMessage
from hybrid_agent.bus.task_feed import lane_states

LIMITS = ConsumerLimits(ack_wait_s=30, max_deliver=3)


async def take(feed, count: int) -> list[str]:
    """The next ``count`` task ids, each acked."""
    ids = []
    for _ in range(count):
        msg = await asyncio.wait_for(feed.next(asyncio.Event()), timeout=10)
        ids.append(TaskMessage.model_validate_json(msg.data).task_id)
        await msg.ack_sync()
    return ids


def task_ids(msgs) -> list[str]:
    return [TaskMessage.model_validate_json(msg.data).task_id for msg in msgs]


@pytest.mark.parametrize(("priority", "band"), [(0, "normal"), (3, "normal"), (4, "high"), (6, "high"),
                                                (7, "urgent"), (9, "urgent")])
def test_a_priority_falls_in_its_band(priority, band):
    assert TaskMessage(task_id="t", priority=priority).band == band


async def test_the_most_urgent_waiting_task_is_taken_first(embedded_bus: Bus):
    await embedded_bus.publish_tasks([TaskMessage(task_id="normal-1"), TaskMessage(task_id="high", priority=5),
                                      TaskMessage(task_id="urgent", priority=9), TaskMessage(task_id="normal-2")])
    feed = await embedded_bus.task_feed(LIMITS)
    assert await take(feed, 4) == ["urgent", "high", "normal-1", "normal-2"]


async def test_an_urgent_task_published_while_a_worker_waits_is_taken(embedded_bus: Bus):
    feed = await embedded_bus.task_feed(LIMITS)
    waiting = asyncio.create_task(take(feed, 1))
    await asyncio.sleep(0.5)   # the feed is waiting on the normal band
    await embedded_bus.publish_tasks([TaskMessage(task_id="urgent", priority=8)])
    assert await waiting == ["urgent"]

async def test_several_waiting_tasks_are_taken_at_once_from_the_most_urgent_lane(embedded_bus: Bus):
    await embedded_bus.publish_tasks([TaskMessage(task_id=f"normal-{i}") for i in range(5)]
                                     + [TaskMessage(task_id="high-1", priority=5), TaskMessage(task_id="high-2", priority=5)])
    feed = await embedded_bus.task_feed(LIMITS)
    stop = asyncio.Event()

    high = await feed.take(stop, up_to=4)
    assert task_ids(high) == ["high-1", "high-2"]   # not topped up from a less urgent lane
    first, rest = await feed.take(stop, up_to=3), await feed.take(stop, up_to=3)
    assert task_ids(first) == ["normal-0", "normal-1", "normal-2"] and task_ids(rest) == ["normal-3", "normal-4"]
    for msg in high + first + rest:
        await msg.ack_sync()
    stop.set()
    assert await feed.take(stop, up_to=3) == []


async def test_a_burst_that_ends_a_wait_is_taken_together(embedded_bus: Bus):
    feed = await embedded_bus.task_feed(LIMITS)
    stop = asyncio.Event()
    waiting = asyncio.create_task(feed.take(stop, up_to=16))
    await asyncio.sleep(0.5)   # the feed is waiting on the normal band
    await embedded_bus.publish_tasks([TaskMessage(task_id=f"routed-{i}") for i in range(5)])   # one routed batch
    taken = await asyncio.wait_for(waiting, timeout=10)
    # The wait ends with the first; the rest, stored by then, come in the same take.
    assert task_ids(taken) == [f"routed-{i}" for i in range(5)]
    for msg in taken:
        await msg.ack_sync()


async def test_a_worker_takes_only_the_queues_it_serves(embedded_bus: Bus):
    await embedded_bus.publish_tasks([TaskMessage(task_id="ci-1", queue="ci"), TaskMessage(task_id="default-1"),
                                      TaskMessage(task_id="ops-1", queue="ops", priority=9)])
    default_only = await embedded_bus.task_feed(LIMITS, ["default"])
    assert await take(default_only, 1) == ["default-1"]
    nothing = asyncio.Event()
    nothing_left = asyncio.create_task(default_only.next(nothing))
    await asyncio.sleep(1.0)   # long enough for several rounds over its lanes
    assert not nothing_left.done()
    nothing.set()
    assert await nothing_left is None
    # Tasks published before any worker served their queue were kept for one.
    ci_and_ops = await embedded_bus.task_feed(LIMITS, ["ci", "ops"])
    assert await take(ci_and_ops, 2) == ["ops-1", "ci-1"]


async def test_the_single_consumer_of_earlier_versions_is_replaced(embedded_bus: Bus):
    await embedded_bus.js.add_consumer(subjects.TASKS_STREAM, ConsumerConfig(
        durable_name=subjects.LEGACY_WORKERS_DURABLE, filter_subject=subjects.TASKS_ALL,
        ack_policy=AckPolicy.EXPLICIT))
    await embedded_bus.publish_tasks([TaskMessage(task_id="after-upgrade")])
    feed = await embedded_bus.task_feed(LIMITS)
    assert await take(feed, 1) == ["after-upgrade"]
    with pytest.raises(NotFoundError):
        await embedded_bus.js.consumer_info(subjects.TASKS_STREAM, subjects.LEGACY_WORKERS_DURABLE)


async def test_a_worker_must_serve_a_queue(embedded_bus: Bus):
    with pytest.raises(ValueError, match="at least one queue"):
        await embedded_bus.task_feed(LIMITS, [])


async def test_tasks_queued_by_an_earlier_version_are_moved_to_their_normal_band(embedded_bus: Bus):
    legacy = TaskMessage(task_id="queued-before-upgrade", queue="ops")
    await embedded_bus.js.publish("ha.tasks.ops", legacy.model_dump_json().encode(),
                                  headers={"Nats-Msg-Id": legacy.dedup_key})
    feed = await embedded_bus.task_feed(LIMITS, ["ops"])
    assert await take(feed, 1) == ["queued-before-upgrade"]
    info = await embedded_bus.js.stream_info(subjects.TASKS_STREAM, subjects_filter="ha.tasks.*")
    assert not info.state.subjects


async def test_lane_states_say_what_waits_where_and_whether_anyone_serves_it(embedded_bus: Bus):
    await embedded_bus.publish_tasks([TaskMessage(task_id="a"), TaskMessage(task_id="b"),
                                      TaskMessage(task_id="page", priority=9),
                                      TaskMessage(task_id="gpu-job", queue="gpu")])
    feed = await embedded_bus.task_feed(LIMITS, ["default"])
    taken = await feed.next(asyncio.Event())   # the urgent one, now in progress
    lanes = {(lane.queue, lane.band): lane for lane in await lane_states(embedded_bus.js)}
    assert TaskMessage.model_validate_json(taken.data).task_id == "page"
    assert (lanes["default", "urgent"].waiting, lanes["default", "urgent"].in_progress) == (0, 1)
    assert (lanes["default", "normal"].waiting, lanes["default", "normal"].served) == (2, True)
    assert (lanes["gpu", "normal"].waiting, lanes["gpu", "normal"].served) == (1, False)
    assert [lane.band for lane in await lane_states(embedded_bus.js)][0] == "urgent"
