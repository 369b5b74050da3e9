"""The trigger sources of the rules file run in one process of the cluster at a time: two
processes contest a Redis lease, the leader's file watch publishes, and when the leader
dies the other takes over."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hybrid_agent.bus.connection import Bus
from hybrid_agent.store.tables import EventRow
from hybrid_agent.triggers.service import run_trigger_sources
from sqlalchemy import select

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def inbox_rules(tmp_path: Path, settings, database_url):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"watches:\n  - {{name: inbox, path: {inbox}, debounce_s: 0.2}}\n")
    # The cron source keeps its job store in the same database as the test's sessions.
    return inbox, settings.model_copy(update={"rules_file": rules, "redis_url": REDIS_URL, "database_url": database_url,
                                              "trigger_lease_ttl_s": 0.6})


async def file_events(sessions) -> list[list[str]]:
    async with sessions() as session:
        rows = await session.scalars(select(EventRow).where(EventRow.source == "file"))
        return [row.payload["paths"] for row in rows]


async def until_published(sessions, inbox: Path, name: str) -> None:
    """Write ``name`` until an event lists it: again only when none did for a while (the
    watch may not be up yet), not while a write is still on its way to the store, which
    would publish one name twice."""
    async with asyncio.timeout(20):
        while True:
            (inbox / name).write_text(str(uuid.uuid4()))
            for _ in range(15):
                await asyncio.sleep(0.1)
                if any(name in paths for paths in await file_events(sessions)):
                    return


async def test_one_process_publishes_and_another_takes_over_when_it_dies(inbox_rules, embedded_nats, sessions):
    inbox, settings = inbox_rules
    key = f"test:triggers:{uuid.uuid4().hex}"
    bus = await Bus.connect(embedded_nats)
    stop = asyncio.Event()
    first = asyncio.create_task(run_trigger_sources(settings, bus, sessions, stop, lease_key=key))
    redis = aioredis.from_url(REDIS_URL)
    try:
        await until_published(sessions, inbox, "a.csv")
        leader = await redis.get(key)
        second = asyncio.create_task(run_trigger_sources(settings, bus, sessions, stop, lease_key=key))
        await until_published(sessions, inbox, "b.csv")
        assert await redis.get(key) == leader   # the first still leads

        first.cancel()   # the leader's process dies: its lease is not released, it expires
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await until_published(sessions, inbox, "c.csv")
        assert await redis.get(key) not in (None, leader)
        stop.set()
        await second
        assert await redis.get(key) is None   # a clean stop releases the lease
    finally:
        stop.set()
        await redis.aclose()
        await bus.close()
    events = await file_events(sessions)
    for name in ("b.csv", "c.csv"):   # written once each after both ran: published once
        assert sum(name in paths for paths in events) == 1, events
