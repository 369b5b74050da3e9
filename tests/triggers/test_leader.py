"""One trigger publisher per cluster: a lease elects it, and another process takes over when
it dies. The same contract holds for the Redis lease and the embedded (in-process) one."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hybrid_agent.config import Settings
from hybrid_agent.triggers.leader import Lease, LocalLease, RedisLease, lead, make_lease
from tests.waiting import eventually

REDIS_URL = "redis://127.0.0.1:6379/0"

MakeLease = Callable[[str, float], Lease]




@pytest.fixture(params=["redis", "local"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[MakeLease]:
    """Leases on one key unique to the test: ``make(holder, ttl_s)``."""
    key = f"test:lease:{uuid.uuid4().hex}"
    made: list[Lease] = []

    def new(holder: str, ttl_s: float) -> Lease:
        lease: Lease = (RedisLease(REDIS_URL, key=key, holder=holder, ttl_s=ttl_s) if request.param == "redis"
                        else LocalLease(key=key, holder=holder, ttl_s=ttl_s))
        made.append(lease)
        return lease
    yield new
    for lease in made:
        await lease.release()
        await lease.close()


async def test_only_one_of_two_holders_acquires(make):
    a, b = make("a", 5), make("b", 5)
    assert await a.acquire()
    assert not await b.acquire()
    assert await a.acquire(), "the holder renews its own lease"


async def test_renewing_keeps_the_lease_past_its_first_expiry(make):
    ttl = 0.6
    a, b = make("a", ttl), make("b", ttl)
    assert await a.acquire()
    first_expiry = time.monotonic() + ttl
    checked_after_expiry = 0
    while time.monotonic() < first_expiry + ttl / 2:
        renewed_at = time.monotonic()
        assert await a.acquire()
        await asyncio.sleep(0.05)
        # Only while the renewal surely still holds (a stalled loop proves nothing).
        if time.monotonic() - renewed_at < ttl / 3:
            assert not await b.acquire()
            checked_after_expiry += time.monotonic() > first_expiry
    assert checked_after_expiry > 0


async def test_the_other_acquires_after_the_holder_releases(make):
    a, b = make("a", 5), make("b", 5)
    assert await a.acquire()
    await a.release()
    assert await b.acquire()
    assert not await a.acquire()


async def test_a_holder_that_stops_renewing_is_taken_over_after_the_ttl(make):
    a, b = make("a", 0.3), make("b", 0.3)
    assert await a.acquire()
    await eventually(b.acquire, "b takes over the expired lease")


async def test_a_holder_that_lost_it_cannot_renew_or_release_the_new_holders_lease(make):
    a, b, c = make("a", 0.3), make("b", 5), make("c", 5)
    assert await a.acquire()
    await eventually(b.acquire, "b takes over the expired lease")
    assert not await a.acquire()
    await a.release()
    assert not await c.acquire(), "b still holds it"
    assert await b.acquire()


async def test_an_unreachable_redis_is_not_leadership():
    lease = RedisLease("redis://127.0.0.1:1/0", key="test:lease:nowhere", holder="a", ttl_s=1)
    assert not await lease.acquire()
    assert not await lease.acquire()
    await lease.release()   # no error: the lease expires by itself
    await lease.close()


def test_make_lease_uses_redis_when_configured(settings: Settings):
    assert isinstance(make_lease(settings, key="k", holder="a"), LocalLease)
    configured = settings.model_copy(update={"redis_url": REDIS_URL, "trigger_lease_ttl_s": 4.0})
    lease = make_lease(configured, key="k", holder="a")
    assert isinstance(lease, RedisLease) and lease.ttl_ms == 4000


class WorkRecorder:
    """Work for ``lead``: records who runs it and checks that no two run at once."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.started: list[str] = []
        self.overlaps: list[set[str]] = []

    def work(self, name: str, *, fail: bool = False) -> Callable[[asyncio.Event], Awaitable[None]]:
        async def run(work_stop: asyncio.Event) -> None:
            self.running.add(name)
            self.started.append(name)
            if len(self.running) > 1:
                self.overlaps.append(set(self.running))
            try:
                if fail:
                    raise RuntimeError("the store is down")
                await work_stop.wait()
            finally:
                self.running.discard(name)
        return run


async def test_two_lead_loops_run_the_work_one_at_a_time_and_the_survivor_takes_over(make):
    ttl = 1.0
    recorder = WorkRecorder()
    stop = asyncio.Event()
    loops = {name: asyncio.create_task(lead(make(name, ttl), stop, recorder.work(name), ttl_s=ttl))
             for name in ("a", "b")}
    try:
        await eventually(lambda: len(recorder.running) == 1, "one of them leads")
        (leader,) = recorder.running
        other = "b" if leader == "a" else "a"
        loops[leader].cancel()   # the leader's process dies: its lease is not released
        await asyncio.gather(loops[leader], return_exceptions=True)
        assert leader not in recorder.running
        await eventually(lambda: other in recorder.running, "the survivor takes over after the ttl")
        assert recorder.overlaps == []
    finally:
        stop.set()
        await asyncio.gather(*loops.values(), return_exceptions=True)


async def test_stopping_the_leader_stops_its_work_and_releases_the_lease(make):
    recorder = WorkRecorder()
    stop = asyncio.Event()
    changes: list[bool] = []
    loop = asyncio.create_task(lead(make("a", 5), stop, recorder.work("a"), ttl_s=5, on_change=changes.append))
    await eventually(lambda: "a" in recorder.running, "a leads")
    stop.set()
    await loop
    assert recorder.running == set() and changes == [True, False]
    assert await make("b", 5).acquire(), "released at once, not left to expire"


async def test_a_leader_whose_lease_is_taken_stops_its_work(make):
    recorder = WorkRecorder()
    stop = asyncio.Event()
    ttl = 0.3
    a = make("a", ttl)
    loop = asyncio.create_task(lead(a, stop, recorder.work("a"), ttl_s=ttl))
    try:
        await eventually(lambda: "a" in recorder.running, "a leads")
        # Someone else takes the key (as when a leader paused past its ttl wakes up).
        b = make("b", 60)

        async def take_over() -> bool:
            await a.release()
            return await b.acquire()
        await eventually(take_over, "b takes the lease")
        await eventually(lambda: "a" not in recorder.running, "a stops its work on losing the lease")
        assert not loop.done(), "a keeps contesting"
    finally:
        stop.set()
        await loop


async def test_failing_work_gives_the_lease_up_and_is_tried_again_later(make):
    recorder = WorkRecorder()
    stop = asyncio.Event()
    ttl = 0.3
    loop = asyncio.create_task(lead(make("a", ttl), stop, recorder.work("a", fail=True), ttl_s=ttl))
    try:
        await eventually(lambda: len(recorder.started) >= 2, "the work is started again after failing")
        assert not loop.done()
    finally:
        stop.set()
        await loop
