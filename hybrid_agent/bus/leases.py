"""Leases: a key naming its holder with an expiry, so that one process of the cluster does
a thing at a time (the trigger leader; a task acting on a resource). With Redis it is
``SET NX PX``, renewed and released by Lua scripts that first check the value is still
ours, so a process that lost its lease (paused, partitioned) can neither extend nor delete
its successor's. The embedded mode's leases live in this process (one process is the
whole cluster there); both keep the same contract, and the same tests run against both.

A fenced acquisition also returns a fencing token: a number that grows with every new
holder of the key, also across a restart that lost the counters (it is at least the clock
in microseconds, so a clock stepped back by more than the time between two holders would
break that). Whoever writes on the lease's behalf presents it, and the store refuses
a token lower than one it has seen (``queries.check_fence``): a holder whose lease expired
while it was paused cannot write over its successor's work."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS[1] the lease, ARGV[1] our holder name, ARGV[2] the ttl in ms; KEYS[2] its last token.
# A token is above the last one and at least the server's clock in microseconds, so tokens
# keep growing when Redis restarts without its data (the store remembers the old ones).
_ACQUIRE_FENCED = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local now = redis.call('TIME')
  local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local token = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') + 1, clock)
  redis.call('SET', KEYS[2], string.format('%d', token))
  return token
end
return 0
"""
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

    async def acquire_fenced(self) -> int:
        """Take the lease if free: its new fencing token; 0 while another holds it (or it is
        ours already: renew that with ``acquire``)."""

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
        self._acquire_fenced = self.client.register_script(_ACQUIRE_FENCED)
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

    async def acquire_fenced(self) -> int:
        """Unreachable Redis is 0: the lease is not ours when we cannot prove it."""
        try:
            token = int(await self._acquire_fenced(keys=[self.key, self.key + ":fence"],
                                                   args=[self.holder, self.ttl_ms]))
        except (RedisError, OSError) as exc:
            self._went_down(exc)
            return 0
        self._came_back()
        return token

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


# The embedded mode's leases: key -> (holder, expiry on time.monotonic()); fence counters.
_LOCAL: dict[str, tuple[str, float]] = {}
_FENCES: dict[str, int] = {}


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

    async def acquire_fenced(self) -> int:
        current = _LOCAL.get(self.key)
        if current is not None and current[1] > time.monotonic():
            return 0
        await self.acquire()
        # As with Redis, at least the clock in microseconds: the counters die with the
        # process, the tokens the store has seen do not.
        _FENCES[self.key] = max(_FENCES.get(self.key, 0) + 1, time.time_ns() // 1000)
        return _FENCES[self.key]

    async def release(self) -> None:
        current = _LOCAL.get(self.key)
        if current is not None and current[0] == self.holder:
            del _LOCAL[self.key]

    async def close(self) -> None:
        return None


async def redis_answers(url: str, *, timeout_s: float = 1.0) -> bool:
    """Whether the Redis at ``url`` answers a PING within ``timeout_s``."""
    client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


def make_lease(redis_url: str | None, *, key: str, holder: str, ttl_s: float) -> Lease:
    """Redis when the cluster has one, else this process's."""
    if redis_url:
        return RedisLease(redis_url, key=key, holder=holder, ttl_s=ttl_s)
    return LocalLease(key=key, holder=holder, ttl_s=ttl_s)
