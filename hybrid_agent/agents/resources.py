"""What a task acts on (a host, a repository, a path root) is held by one task at a time
across the cluster: a lease (Redis when configured, else in-process) taken with a fencing
token, renewed with the task's heartbeat. Every journal write of the task presents the
token, and the store refuses it once a newer holder wrote (``queries.check_fence``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from hybrid_agent.bus.leases import Lease, make_lease, new_holder
from hybrid_agent.config import Settings

POLL_S = 1.0   # how often a task waiting for its resource tries again


@dataclass
class ResourceHold:
    resource: str
    lease: Lease
    token: int

    async def renew(self) -> bool:
        return await self.lease.acquire()

    async def release(self) -> None:
        await self.lease.release()
        await self.lease.close()


def resource_of(resource: str | None, workspace: Path) -> str:
    """The task's resource: as its rule named it, else its workspace (a path root)."""
    return resource or f"path:{workspace}"


async def hold_resource(settings: Settings, resource: str, *, task_id: str, wait_s: float,
                        waiting: Callable[[], Awaitable[None]]) -> ResourceHold | None:
    """The resource's lease and fencing token, waited for (``waiting`` is called once, when
    another task holds it) up to ``wait_s``; None if it stayed busy."""
    lease = make_lease(settings.redis_url, key=f"ha:resource:{resource}", holder=f"{new_holder()}/{task_id}",
                       ttl_s=settings.ack_wait_s)
    deadline = asyncio.get_running_loop().time() + wait_s
    told = False
    while True:
        token = await lease.acquire_fenced()
        if token:
            return ResourceHold(resource, lease, token)
        if not told:
            await waiting()
            told = True
        if asyncio.get_running_loop().time() > deadline:
            await lease.close()
            return None
        await asyncio.sleep(POLL_S)
