"""One trigger publisher per cluster. File watches and cron schedules must fire once, not
once per node: every node contests a lease (``bus/leases.py``) and only its holder runs the
trigger sources; when the holder dies its lease expires and another node takes over
within a ttl."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from hybrid_agent.bus.leases import Lease

log = logging.getLogger(__name__)

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
