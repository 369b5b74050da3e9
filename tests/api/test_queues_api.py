"""GET /api/queues: what waits in each lane of TASKS, and which queues no worker serves."""

import asyncio

from hybrid_agent.api.auth import create_token
from hybrid_agent.bus.connection import ConsumerLimits
from hybrid_agent.bus.messages import TaskMessage


async def test_a_viewer_sees_each_lane_most_urgent_first(api, sessions):
    bus = api.app.state.bus
    await bus.publish_tasks([TaskMessage(task_id="a"), TaskMessage(task_id="page", priority=8),
                             TaskMessage(task_id="nightly", queue="batch")])
    feed = await bus.task_feed(ConsumerLimits(ack_wait_s=30, max_deliver=3))
    await feed.next(asyncio.Event())   # a worker takes the urgent task
    viewer = await create_token(sessions, name="watcher", role="viewer")
    response = await api.get("/api/queues", headers={"Authorization": f"Bearer {viewer}"})
    assert response.status_code == 200
    lanes = [(lane["queue"], lane["band"], lane["waiting"], lane["in_progress"], lane["served"])
             for lane in response.json() if lane["waiting"] or lane["in_progress"]]
    assert lanes == [("default", "urgent", 0, 1, True), ("batch", "normal", 1, 0, False),
                     ("default", "normal", 1, 0, True)]


async def test_queues_need_a_token(api):
    assert (await api.get("/api/queues", headers={"Authorization": ""})).status_code == 401
