"""One connection to NATS with JetStream: streams created idempotently, publishes carrying
``Nats-Msg-Id`` for deduplication, and the durable pull consumers the router and workers share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, PubAck, ConsumerConfig, DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from hybrid_agent.bus import subjects
from hybrid_agent.bus.messages import Event, TaskMessage
from hybrid_agent.bus.task_feed import ConsumerLimits, TaskFeed

DEDUP_WINDOW_S = 120.0
DAY_S = 86400.0


class BusError(Exception):
    """The bus is unreachable or refused an operation."""


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    """The streams, each kept on ``replicas`` servers of a NATS cluster (applied on every
    start, so a setting raised later reaches existing streams)."""
    events = StreamConfig(
        name=subjects.EVENTS_STREAM, subjects=[subjects.EVENTS_ALL], retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE, max_age=7 * DAY_S, duplicate_window=DEDUP_WINDOW_S, discard=DiscardPolicy.OLD,
        num_replicas=replicas,
    )
    # Work-queue retention: a task message is gone once a worker acks it.
    tasks = StreamConfig(
        name=subjects.TASKS_STREAM, subjects=[subjects.TASKS_ALL], retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE, duplicate_window=DEDUP_WINDOW_S, num_replicas=replicas,
    )
    dead = StreamConfig(
        name=subjects.DEAD_STREAM, subjects=[subjects.DEAD_ALL], retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE, max_age=30 * DAY_S, num_replicas=replicas,
    )
    return [events, tasks, dead]


class Bus:
    def __init__(self, nc: Client, js: JetStreamContext) -> None:
        self.nc = nc
        self.js = js
        self.timeout_s = 5.0

    @classmethod
    async def connect(cls, url: str, *, name: str = "hybrid-agent", timeout_s: float = 5.0, replicas: int = 1) -> Bus:
        """Connect to ``url`` (several servers of a cluster: comma-separated) and make sure
        the streams exist."""
        servers = [server.strip() for server in url.split(",") if server.strip()]
        try:
            nc = await nats.connect(servers=servers, name=name, connect_timeout=timeout_s,
                                    max_reconnect_attempts=-1, allow_reconnect=True)
        except Exception as exc:  # nats raises several unrelated types for "cannot connect"
            raise BusError(f"cannot connect to NATS at {url}: {exc}") from exc
        bus = cls(nc, nc.jetstream(timeout=timeout_s))
        bus.timeout_s = timeout_s
        await bus.ensure_streams(replicas)
        return bus

    async def ensure_streams(self, replicas: int = 1) -> None:
        for config in stream_configs(replicas):
            try:
                await self.js.stream_info(config.name)
                await self.js.update_stream(config)
            except NotFoundError:
                await self.js.add_stream(config)

    async def publish_event(self, event: Event) -> PubAck:
        """Publish one event; the ack says its stream sequence and whether JetStream
        recognised it as a duplicate of one inside the dedup window."""
        try:
            return await self.js.publish(
                subjects.event_subject(event.source, event.kind), event.model_dump_json().encode(),
                headers={"Nats-Msg-Id": event.dedup_key},
            )
        except Exception as exc:
            raise BusError(f"publishing event {event.id} failed: {exc}") from exc

    async def publish_tasks(self, messages: Sequence[TaskMessage]) -> list[PubAck]:
        """Publish tasks concurrently and wait for every ack; the task id is the dedup key."""
        futures = [
            await self.js.publish_async(
                subjects.task_subject(message.queue, message.band), message.model_dump_json().encode(),
                headers={"Nats-Msg-Id": message.dedup_key},
            )
            for message in messages
        ]
        try:
            # Bounded: an ack lost as NATS restarts would otherwise be awaited forever. A
            # retry is safe, the task id being the dedup key.
            return list(await asyncio.wait_for(asyncio.gather(*futures), timeout=self.timeout_s * 2))
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise BusError(f"publishing {len(futures)} tasks: no ack within {self.timeout_s * 2:.0f}s") from exc

    async def dead_letter(self, message: TaskMessage, *, reason: str, deliveries: int) -> None:
        await self.js.publish(
            subjects.dead_task_subject(message.queue), message.model_dump_json().encode(),
            headers={"HA-Reason": reason[:500], "HA-Deliveries": str(deliveries)},
        )

    async def publish_trace(self, task_id: str, payload: bytes) -> None:
        """Live step traces are ephemeral (core NATS); the store keeps the journal."""
        await self.nc.publish(subjects.trace_subject(task_id), payload)

    @contextlib.asynccontextmanager
    async def watch_traces(self, task_id: str) -> AsyncIterator[Subscription]:
        """A subscription to a task's live traces (``await sub.next_msg(timeout=...)``),
        unsubscribed on leaving."""
        subscription = await self.nc.subscribe(subjects.trace_subject(task_id))
        try:
            yield subscription
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def publish_cancel(self, task_id: str) -> None:
        """Ask the worker running ``task_id`` to stop it. Core NATS: a worker that misses it
        (not running the task yet, or restarted) reads the request from the task's row."""
        await self.nc.publish(subjects.cancel_subject(task_id), b"")
        await self.nc.flush(timeout=5)

    async def publish_approval(self, approval_id: str, payload: bytes, *, decided: bool) -> None:
        """An approval requested (for consoles and notifiers) or decided. Core NATS: the
        store holds the approval; these only tell whoever listens."""
        subject = subjects.approval_decided_subject(approval_id) if decided else subjects.APPROVALS_REQUESTED
        await self.nc.publish(subject, payload)

    async def on_cancel(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(task_id)`` for every cancel request published from now on."""
        async def handle(msg: Msg) -> None:
            callback(msg.subject.rsplit(".", 1)[-1])
        await self.nc.subscribe(subjects.CANCEL_ALL, cb=handle)

    async def router_subscription(self) -> JetStreamContext.PullSubscription:
        config = ConsumerConfig(durable_name=subjects.ROUTER_DURABLE, ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0,
                                max_ack_pending=20000)
        return await self.js.pull_subscribe(subjects.EVENTS_ALL, durable=subjects.ROUTER_DURABLE,
                                            stream=subjects.EVENTS_STREAM, config=config)

    async def task_feed(self, limits: ConsumerLimits, queues: Sequence[str] = ("default",)) -> TaskFeed:
        """The TASKS consumers of ``queues`` (every band of each), created or updated with ``limits``."""
        return await TaskFeed.open(self.nc, self.js, queues, limits, timeout_s=self.timeout_s)

    async def close(self) -> None:
        """Flush what was published, then close. (Not drain: a pull subscription with a
        fetch outstanding can keep a drain waiting for its whole timeout.)"""
        if self.nc.is_closed:
            return
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=2)
        await self.nc.close()
