"""One trigger publisher per cluster. File watches and cron schedules must fire once, not
once per node: every node contests a lease and only its holder runs the trigger sources;
when the holder dies its lease expires and another node takes over within a ttl.

A lease is a key naming its holder with an expiry. With Redis it is ``SET NX PX``, renewed
and released by Lua scripts that first check the value is still ours, so a process that
lost its lease (paused, partitioned) can neither extend nor delete its successor's. The
embedded mode's lease lives in this process (one process is the whole cluster there)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hybrid_agent.config import Settings

log = logging.getLogger(__name__)

# KEYS[1] the lease, ARGV[1] our holder name, ARGV[2] the ttl in ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease(Protocol):
    key: str
    holder: str

    async def acquire(self) -> bool:
        """Take the lease if free, renew it if ours; False while another holds it."""

    async def release(self) -> None:
        """Give it up, only if it is still ours."""

    async def close(self) -> None:
        """Free the connection, if any (the lease itself is left as it is)."""


def new_holder() -> str:
    """A name unique to this process (two processes on one host are two holders)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RedisLease:
    def __init__(self, url: str, *, key: str, holder: str, ttl_s: float) -> None:
        self.key, self.holder, self.ttl_ms = key, holder, max(1, int(ttl_s * 1000))
        # A call must not outlast the lease it is renewing.
        timeout = max(ttl_s / 3, 0.1)
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._down = False

    async def acquire(self) -> bool:
        """Unreachable Redis is False: we are not leader when we cannot prove it."""
        try:
            held = bool(await self.client.set(self.key, self.holder, nx=True, px=self.ttl_ms))
            if not held:    # ours already? then this renews it
                held = bool(await self._renew(keys=[self.key], args=[self.holder, self.ttl_ms]))
        except (RedisError, OSError) as exc:
            self._went_down(exc)
            return False
        self._came_back()
        return held

    async def release(self) -> None:
        try:
            await self._release(keys=[self.key], args=[self.holder])
        except (RedisError, OSError) as exc:   # it expires by itself
            self._went_down(exc)
            return
        self._came_back()

    async def close(self) -> None:
        await self.client.aclose()

    def _went_down(self, exc: BaseException) -> None:
        if not self._down:     # once per outage, not once per try
            log.warning("lease %s: Redis unreachable, not leading until it answers: %s", self.key, exc)
            self._down = True

    def _came_back(self) -> None:
        if self._down:
            log.info("lease %s: Redis answers again", self.key)
            self._down = False


# The embedded mode's leases: key -> (holder, expiry on time.monotonic()).
_LOCAL: dict[str, tuple[str, float]] = {}


class LocalLease:
    """The same contract as ``RedisLease`` within one process."""

    def __init__(self, *, key: str, holder: str, ttl_s: float) -> None:
        self.key, self.holder, self.ttl_s = key, holder, ttl_s

    async def acquire(self) -> bool:
        now = time.monotonic()
        current = _LOCAL.get(self.key)
        if current is not None and current[0] != self.holder and current[1] > now:
            return False
        _LOCAL[self.key] = (self.holder, now + self.ttl_s)
        return True

    async def release(self) -> None:
        current = _LOCAL.get(self.key)
        if current is not None and current[0] == self.holder:
            del _LOCAL[self.key]

    async def close(self) -> None:
        return None


def make_lease(settings: Settings, *, key: str, holder: str) -> Lease:
    """Redis when the cluster has one (``redis_url``), else this process's."""
    ttl_s = settings.trigger_lease_ttl_s
    if settings.redis_url:
        return RedisLease(settings.redis_url, key=key, holder=holder, ttl_s=ttl_s)
    return LocalLease(key=key, holder=holder, ttl_s=ttl_s)


Work = Callable[[asyncio.Event], Awaitable[None]]


async def lead(lease: Lease, stop: asyncio.Event, work: Work, *, ttl_s: float,
               on_change: Callable[[bool], None] | None = None) -> None:
    """Until ``stop``: contest the lease every ttl/3 and run ``work(work_stop)`` while we
    hold it, renewing every ttl/3. Losing the lease sets ``work_stop`` and waits for the
    work to end before contesting again. Work that fails (or ends by itself) gives the
    lease up, and we contest again a ttl later (a failing work does not spin).

    ``stop`` releases the lease. Cancelling ``lead`` is a process dying: the work is
    cancelled and the lease left to expire."""
    period = ttl_s / 3
    try:
        while not stop.is_set():
            if await lease.acquire():
                pause = await _hold(lease, stop, work, period=period, ttl_s=ttl_s, on_change=on_change)
            else:
                pause = period
            await _until(pause, stop)
    finally:
        if stop.is_set():
            await _release(lease)


async def _hold(lease: Lease, stop: asyncio.Event, work: Work, *, period: float, ttl_s: float,
                on_change: Callable[[bool], None] | None) -> float:
    """Run the work while the lease holds; the pause before contesting again."""
    log.info("lease %s: %s leads", lease.key, lease.holder)
    work_stop = asyncio.Event()
    task = asyncio.create_task(work(work_stop))
    _notify(on_change, True)
    lost = False
    try:
        while not stop.is_set() and not task.done():
            tick = asyncio.ensure_future(_until(period, stop))
            try:
                await asyncio.wait([task, tick], return_when=asyncio.FIRST_COMPLETED)
            finally:
                tick.cancel()
            if stop.is_set() or task.done():
                break
            if not await lease.acquire():
                log.warning("lease %s: %s lost the lease; stopping its work", lease.key,
                            lease.holder)
                lost = True
                break
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        if not task.done():
            work_stop.set()
            await _end(task, grace_s=ttl_s)
        _notify(on_change, False)
    if lost or stop.is_set():
        return period
    _report_end(task)
    await _release(lease)    # another node may do better; we try again after a ttl
    return ttl_s


async def _end(task: asyncio.Task[None], *, grace_s: float) -> None:
    """Wait for the work to honour its stop; one that ignores it for a ttl (another node
    may lead by then) is cancelled."""
    done, _ = await asyncio.wait([task], timeout=grace_s)
    if not done:
        log.warning("trigger work ignored its stop for %.1fs; cancelling it", grace_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    elif not task.cancelled() and task.exception() is not None:
        _report_end(task)


def _report_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        log.warning("trigger work was cancelled")
    elif task.exception() is not None:
        log.error("trigger work failed", exc_info=task.exception())
    else:
        log.warning("trigger work ended by itself")


async def _release(lease: Lease) -> None:
    try:
        await lease.release()
    except Exception:    # it expires by itself
        log.exception("releasing lease failed")


def _notify(on_change: Callable[[bool], None] | None, leading: bool) -> None:
    if on_change is None:
        return
    try:
        on_change(leading)
    except Exception:
        log.exception("leader on_change(%s) failed", leading)


async def _until(timeout: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)
