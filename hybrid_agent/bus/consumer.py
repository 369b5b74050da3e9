"""Pull-consumer plumbing: bounded fetches until a stop event, and heartbeats that keep a
long-running message's lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

T = TypeVar("T")
log = logging.getLogger(__name__)


async def fetch_batches(
    subscription: JetStreamContext.PullSubscription, *, batch: int, stop: asyncio.Event, wait_s: float = 1.0
) -> AsyncIterator[list[Msg]]:
    """Yield non-empty batches until ``stop`` is set; each fetch waits at most ``wait_s``."""
    while not stop.is_set():
        try:
            messages = await subscription.fetch(batch, timeout=wait_s)
        except asyncio.TimeoutError:  # nats raises both its own subclass and the plain one
            continue
        except nats.errors.ConnectionClosedError:
            return
        except nats.errors.Error as exc:  # a status reply (409 and kin) or a reconnect: fetch again
            log.warning("fetch failed, retrying: %s", exc)
            await asyncio.sleep(min(wait_s, 1.0))
            continue
        if messages:
            yield messages


async def with_heartbeat(msg: Msg, work: Awaitable[T], *, interval_s: float,
                         also: Callable[[], Awaitable[None]] | None = None) -> T:
    """Run ``work`` while telling JetStream every ``interval_s`` that the message is in
    progress, so a long step does not lose its lease and get redelivered to another worker;
    ``also`` beats alongside (the worker tells the store)."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval_s)
            with contextlib.suppress(Exception):  # a missed beat only risks a redelivery
                await msg.in_progress()
                if also is not None:
                    await also()

    heartbeat = asyncio.create_task(beat())
    try:
        return await work
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat

