"""Leases: one holder at a time, renewed only by it, taken over after it expires, released
only by it; a fenced acquisition's token grows with every new holder. The same contract
holds for the Redis lease and the embedded (in-process) one."""

from __future__ import annotations

import asyncio
import time

from hybrid_agent.bus.leases import LocalLease, RedisLease, make_lease
from tests.conftest import REDIS_URL
from tests.waiting import eventually


async def test_only_one_of_two_holders_acquires(new_lease):
    a, b = new_lease("a", 5), new_lease("b", 5)
    assert await a.acquire()
    assert not await b.acquire()
    assert await a.acquire(), "the holder renews its own lease"


async def test_renewing_keeps_the_lease_past_its_first_expiry(new_lease):
    ttl = 0.6
    a, b = new_lease("a", ttl), new_lease("b", ttl)
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


async def test_the_other_acquires_after_the_holder_releases(new_lease):
    a, b = new_lease("a", 5), new_lease("b", 5)
    assert await a.acquire()
    await a.release()
    assert await b.acquire()
    assert not await a.acquire()


async def test_a_holder_that_stops_renewing_is_taken_over_after_the_ttl(new_lease):
    a, b = new_lease("a", 0.3), new_lease("b", 0.3)
    assert await a.acquire()
    await eventually(b.acquire, "b takes over the expired lease")


async def test_a_holder_that_lost_it_cannot_renew_or_release_the_new_holders_lease(new_lease):
    a, b, c = new_lease("a", 0.3), new_lease("b", 5), new_lease("c", 5)
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


def test_make_lease_uses_redis_when_configured():
    assert isinstance(make_lease(None, key="k", holder="a", ttl_s=4.0), LocalLease)
    lease = make_lease(REDIS_URL, key="k", holder="a", ttl_s=4.0)
    assert isinstance(lease, RedisLease) and lease.ttl_ms == 4000




async def test_each_new_holder_gets_a_higher_fencing_token(new_lease):
    a, b = new_lease("a", 0.3), new_lease("b", 0.3)
    first = await a.acquire_fenced()
    assert first > 0
    assert await b.acquire_fenced() == 0, "held: no token for another"
    assert await a.acquire_fenced() == 0, "ours already: renewing is acquire's"
    await eventually(b.acquire_fenced, "b takes the expired lease")   # a stopped renewing
    assert not await a.acquire(), "a's lease is gone"
    await b.release()
    assert await a.acquire_fenced() > first + 1


async def test_tokens_keep_growing_when_the_counters_are_lost(new_lease):
    from hybrid_agent.bus import leases

    first = new_lease("a", 30)
    token = await first.acquire_fenced()
    await first.release()
    # Redis restarted without its data; the embedded mode's process restarted.
    if isinstance(first, leases.RedisLease):
        await first.client.delete(first.key + ":fence")
    else:
        leases._FENCES.clear()
    assert await new_lease("b", 30).acquire_fenced() > token
