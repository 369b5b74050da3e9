"""Connecting: a cluster's servers as comma-separated URLs, and consumer limits that follow
the settings after a restart."""

from hybrid_agent.bus import subjects
from hybrid_agent.bus.connection import Bus, ConsumerLimits
from hybrid_agent.bus.embedded import free_port


async def test_a_comma_separated_url_reaches_a_server_that_answers(embedded_nats):
    dead = f"nats://127.0.0.1:{free_port()}"
    bus = await Bus.connect(f"{dead}, {embedded_nats}", timeout_s=1.0)
    try:
        assert bus.nc.is_connected and bus.nc.connected_url.port == int(embedded_nats.rsplit(":", 1)[1])
    finally:
        await bus.close()


async def test_raised_consumer_limits_reach_the_existing_consumers(embedded_bus):
    await embedded_bus.task_feed(ConsumerLimits(ack_wait_s=30, max_deliver=3))
    await embedded_bus.task_feed(ConsumerLimits(ack_wait_s=90, max_deliver=5))
    for band in subjects.BANDS:
        info = await embedded_bus.js.consumer_info(subjects.TASKS_STREAM, subjects.workers_durable("default", band))
        assert info.config.ack_wait == 90 and info.config.max_deliver == 5
