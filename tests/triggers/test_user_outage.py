"""A submission while NATS is down still succeeds: the event and its task are stored, the
outbox publishes the event once NATS is back, and the task reaches TASKS exactly once."""

from __future__ import annotations

from hybrid_agent.bus.messages import TaskMessage
from hybrid_agent.store import queries
from hybrid_agent.triggers.outbox import Outbox
from hybrid_agent.triggers.router import Router
from tests.conftest import admin_client, default_lane
from tests.triggers.test_router import route_everything
from tests.waiting import eventually


async def test_a_task_submitted_during_a_nats_outage_is_queued_once_when_it_returns(settings, sessions,
                                                                                     restartable_nats):
    server, bus = restartable_nats
    async with admin_client(settings, sessions, bus) as api:
        server.stop()
        created = await api.post("/api/tasks", json={"goal": "rotate the logs"})
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        async with sessions() as session:
            assert (await queries.get_task(session, task_id=task_id)).status == "queued"

        server.start()
        await eventually(lambda: bus.nc.is_connected, "the bus reconnects", 20)
        outbox = Outbox(bus, sessions)
        await eventually(outbox.flush, "the outbox publishes the waiting event", 20)
    router = Router(bus, sessions)
    await route_everything(router, bus, expected=1)
    await router.journal.close()
    tasks = await default_lane(bus)
    messages = await tasks.fetch(10, timeout=2)
    assert [TaskMessage.model_validate_json(m.data).task_id for m in messages] == [task_id]
    assert (await bus.js.stream_info("EVENTS")).state.messages == 1