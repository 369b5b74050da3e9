"""What a task acts on (a host, a repository, a path root) is held by one task at a time
across the cluster: a lease (Redis when configured, else in-process) taken with a fencing
token, renewed with the task's heartbeat. Every journal write of the task presents the
token, and the store refuses it once a newer holder wrote (``queries.check_fence``).

A rule may also cap how many of its tasks run at once: its tasks hold one of that many
slots, each a lease of its own, renewed the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from pathlib import Path

from hybrid_agent.bus.leases import Lease, make_lease, new_holder
from hybrid_agent.config import Settings

POLL_S = 1.0   # how often a task waiting for its resource tries again
T = TypeVar("T")


@dataclass
class LeaseHold:
    """A lease a running task holds: renewed with its heartbeat, given up when it ends."""

    lease: Lease

    async def renew(self) -> bool:
        return await self.lease.acquire()

    async def release(self) -> None:
        await self.lease.release()
        await self.lease.close()


@dataclass
class ResourceHold(LeaseHold):
    resource: str
    token: int


def resource_of(resource: str | None, workspace: Path) -> str:
    """The task's resource: as its rule named it, else its workspace (a path root)."""
    return resource or f"path:{workspace}"


async def hold_resource(settings: Settings, resource: str, *, task_id: str, wait_s: float,
                        waiting: Callable[[], Awaitable[None]]) -> ResourceHold | None:
    """The resource's lease and fencing token, waited for (``waiting`` is called once, when
    another task holds it) up to ``wait_s``; None if it stayed busy."""
    lease = make_lease(settings.redis_url, key=f"ha:resource:{resource}", holder=f"{new_holder()}/{task_id}",
                       ttl_s=settings.ack_wait_s)

    async def attempt() -> ResourceHold | None:
        token = await lease.acquire_fenced()
        return ResourceHold(lease=lease, resource=resource, token=token) if token else None

    hold = await _wait_for(attempt, wait_s=wait_s, waiting=waiting)
    if hold is None:
        await lease.close()
    return hold


@dataclass
class RuleSlot(LeaseHold):
    rule: str


async def hold_rule_slot(settings: Settings, rule: str, limit: int, *, task_id: str, wait_s: float,
                         waiting: Callable[[], Awaitable[None]]) -> RuleSlot | None:
    """One of the ``limit`` slots of ``rule``, waited for as ``hold_resource`` waits."""
    holder = f"{new_holder()}/{task_id}"
    # Made once: each round tries them all, not a new connection per slot and round.
    leases = [make_lease(settings.redis_url, key=f"ha:rule:{rule}:slot:{slot}", holder=holder,
                         ttl_s=settings.ack_wait_s) for slot in range(limit)]

    async def attempt() -> RuleSlot | None:
        for lease in leases:
            if await lease.acquire():
                return RuleSlot(lease=lease, rule=rule)
        return None

    slot = await _wait_for(attempt, wait_s=wait_s, waiting=waiting)
    for lease in leases:
        if slot is None or lease is not slot.lease:
            await lease.close()
    return slot


async def _wait_for(attempt: Callable[[], Awaitable[T | None]], *, wait_s: float,
                    waiting: Callable[[], Awaitable[None]]) -> T | None:
    """``attempt`` until it gives something, every ``POLL_S`` up to ``wait_s``; ``waiting``
    is called once, after the first attempt came back empty."""
    deadline = asyncio.get_running_loop().time() + wait_s
    told = False
    while True:
        got = await attempt()
        if got is not None:
            return got
        if not told:
            await waiting()
            told = True
        if asyncio.get_running_loop().time() > deadline:
            return None
        await asyncio.sleep(POLL_S)
