"""A worker's view of TASKS: the queues it serves, each in three priority bands, one durable
pull consumer per (queue, band) shared by every worker serving that queue. ``next`` hands
out the most urgent waiting message: it asks each consumer in band order for a message
without waiting (``no_wait``), and only when all are empty waits a moment on the first
queue's normal band, where most work arrives. ``take`` hands out up to n of the most urgent
lane's waiting messages at once (one pull; after a wait, a second one without waiting for
those that came with the first), for a worker that settles several in one store
transaction. A task on a queue no worker serves waits in the stream until one does.

Each lane has its own inbox: a message that arrives after its pull stopped waiting (the
server delivered it as the wait expired) is already ours, and is handed out first the next
time that lane is asked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from hybrid_agent.bus import subjects

log = logging.getLogger(__name__)

LONG_POLL_S = 0.25   # the longest an urgent task waits for an idle worker to look again
API_PREFIX = "$JS.API"
NO_MESSAGES = ("404", "408")   # none waiting; a waiting pull expired
HEARTBEAT = "100"


@dataclass(frozen=True)
class ConsumerLimits:
    ack_wait_s: float
    max_deliver: int


@dataclass(frozen=True)
class Lane:
    queue: str
    band: str
    durable: str

    @property
    def next_subject(self) -> str:
        return f"{API_PREFIX}.CONSUMER.MSG.NEXT.{subjects.TASKS_STREAM}.{self.durable}"


def lanes(queues: Sequence[str]) -> list[Lane]:
    """(queue, band) pairs in the order they are served: every queue's urgent band first."""
    return [Lane(queue, band, subjects.workers_durable(queue, band)) for band in subjects.BANDS for queue in queues]


@dataclass(frozen=True)
class LaneState:
    """What waits in one lane: tasks not yet taken, and taken but not yet acked."""

    queue: str
    band: str
    waiting: int
    in_progress: int
    served: bool                 # a workers' consumer exists (some worker served it once)
    last_active: datetime | None  # when a worker last took a task of it


async def lane_states(js: JetStreamContext) -> list[LaneState]:
    """Every lane that has a consumer or holds tasks, most urgent first."""
    info = await js.stream_info(subjects.TASKS_STREAM, subjects_filter=subjects.TASKS_ALL)
    stored = {tuple(subject.split(".")[2:4]): count for subject, count in (info.state.subjects or {}).items()
              if subject.count(".") == 3}
    states = {}
    for consumer in await js.consumers_info(subjects.TASKS_STREAM):
        parts = (consumer.config.filter_subject or "").split(".")
        if not consumer.name.startswith("workers-") or len(parts) != 4:
            continue
        queue, band = parts[2], parts[3]
        delivered = consumer.delivered
        states[(queue, band)] = LaneState(queue, band, consumer.num_pending or 0, consumer.num_ack_pending or 0, True,
                                          delivered.last_active if delivered else None)
    for (queue, band), count in stored.items():
        states.setdefault((queue, band), LaneState(queue, band, count, 0, False, None))
    order = {band: i for i, band in enumerate(subjects.BANDS)}
    return sorted(states.values(), key=lambda lane: (order.get(lane.band, len(order)), lane.queue))


async def move_legacy_tasks(js: JetStreamContext) -> int:
    """Tasks an earlier version queued on ``ha.tasks.<queue>`` (no band) move to their
    queue's normal band, where workers of this version take them; how many moved. Each
    move is published before the old message is acked: a crash between the two leaves a
    copy, which the worker recognises as a finished or running task."""
    info = await js.stream_info(subjects.TASKS_STREAM, subjects_filter="ha.tasks.*")
    moved = 0
    for subject in info.state.subjects or {}:
        queue = subject.split(".")[2]
        durable = f"legacy-{queue}"
        await js.add_consumer(subjects.TASKS_STREAM, ConsumerConfig(durable_name=durable, filter_subject=subject,
                                                                    ack_policy=AckPolicy.EXPLICIT, ack_wait=60))
        old = await js.pull_subscribe_bind(durable, subjects.TASKS_STREAM)
        try:
            while messages := await _fetch_some(old):
                for msg in messages:
                    await js.publish(subjects.task_subject(queue, "normal"), msg.data,
                                     headers={"Nats-Msg-Id": f"moved:{msg.metadata.sequence.stream}"})
                    await msg.ack_sync()
                    moved += 1
        finally:
            await old.unsubscribe()
            with contextlib.suppress(NotFoundError):   # another worker moving them too removed it
                await js.delete_consumer(subjects.TASKS_STREAM, durable)
    if moved:
        log.warning("moved %d tasks queued by an earlier version to their queues' normal band", moved)
    return moved


async def _fetch_some(subscription: JetStreamContext.PullSubscription) -> list[Msg]:
    try:
        return await subscription.fetch(100, timeout=1.0)
    except (asyncio.TimeoutError, nats.errors.TimeoutError):
        return []


class TaskFeed:
    def __init__(self, nc: Client, inboxes: dict[Lane, Subscription], *, timeout_s: float) -> None:
        self.nc = nc
        self.inboxes = inboxes   # in serving order
        self.waiting = next(lane for lane in inboxes if lane.band == "normal")   # the first queue's
        self.timeout_s = timeout_s

    @classmethod
    async def open(cls, nc: Client, js: JetStreamContext, queues: Sequence[str], limits: ConsumerLimits, *,
                   timeout_s: float = 5.0) -> TaskFeed:
        if not queues:
            raise ValueError("a worker must serve at least one queue")
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(subjects.TASKS_STREAM, subjects.LEGACY_WORKERS_DURABLE)
        await move_legacy_tasks(js)
        inboxes = {}
        for lane in lanes(queues):
            # Create or update: a raised ack wait must reach an existing consumer, or it would
            # redeliver tasks still being worked on.
            await js.add_consumer(subjects.TASKS_STREAM, ConsumerConfig(
                durable_name=lane.durable, filter_subject=subjects.task_subject(lane.queue, lane.band),
                ack_policy=AckPolicy.EXPLICIT, ack_wait=limits.ack_wait_s, max_deliver=limits.max_deliver,
                max_ack_pending=1000))
            inboxes[lane] = await nc.subscribe(nc.new_inbox())
        return cls(nc, inboxes, timeout_s=timeout_s)

    async def next(self, stop: asyncio.Event) -> Msg | None:
        """The most urgent message waiting on any lane; None once ``stop`` is set."""
        taken = await self.take(stop, up_to=1)
        return taken[0] if taken else None

    async def take(self, stop: asyncio.Event, *, up_to: int) -> list[Msg]:
        """Up to ``up_to`` messages of the most urgent lane that has any, waiting until one
        comes; [] once ``stop`` is set. All are ours to ack: a worker that takes several
        must settle each before their ack wait runs out."""
        while not stop.is_set():
            try:
                for lane in self.inboxes:
                    if taken := await self._pull(lane, up_to=up_to, wait_s=None):
                        return taken
                taken = await self._pull(self.waiting, up_to=up_to, wait_s=LONG_POLL_S)
                if taken and len(taken) < up_to:
                    # Tasks come in bursts (a routed batch): what came with the first is
                    # already waiting, and taken now it shares its transactions.
                    taken += await self._pull(self.waiting, up_to=up_to - len(taken), wait_s=None)
            except nats.errors.ConnectionClosedError:
                return []
            except nats.errors.Error as exc:   # a reconnect, no answer: ask again shortly
                log.warning("fetching a task failed, retrying: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                continue
            if taken:
                return taken
        return []

    async def close(self) -> None:
        for inbox in self.inboxes.values():
            with contextlib.suppress(nats.errors.Error):
                await inbox.unsubscribe()

    async def _pull(self, lane: Lane, *, up_to: int, wait_s: float | None) -> list[Msg]:
        """Up to ``up_to`` messages of ``lane``: those delivered earlier and not yet handed
        out, else those asked for now (``wait_s`` None: only those waiting; else waiting
        that long for one, as a pull for more would go on delivering after we return)."""
        inbox, taken = self.inboxes[lane], []
        while inbox.pending_msgs and len(taken) < up_to:
            msg = await inbox.next_msg(timeout=None)   # there: no wait
            if not JetStreamContext.is_status_msg(msg):
                taken.append(msg)
        if taken:
            return taken
        batch = up_to if wait_s is None else 1
        request = {"batch": batch, "no_wait": True} if wait_s is None else {"batch": 1, "expires": int(wait_s * 1e9)}
        await self.nc.publish(lane.next_subject, json.dumps(request).encode(), reply=inbox.subject)
        deadline = asyncio.get_running_loop().time() + (wait_s or 0) + self.timeout_s
        while len(taken) < batch:
            try:
                msg = await inbox.next_msg(timeout=max(deadline - asyncio.get_running_loop().time(), 0.001))
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                break   # an answer still on its way waits in the inbox
            status = JetStreamContext.is_status_msg(msg)
            if not status:
                taken.append(msg)
            elif status in NO_MESSAGES:   # no more waiting (a no_wait pull that got fewer than it asked)
                break
            elif status != HEARTBEAT:
                log.warning("lane %s answered %s %s", lane.durable, status, msg.headers)
                break
        return taken
