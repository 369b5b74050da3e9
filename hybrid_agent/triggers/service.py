"""The trigger sources of a process: the rules file's file watches and cron schedules,
run only while this process holds the cluster's trigger lease (so each change or firing
is published once, not once per node), publishing through the outbox."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.bus.connection import Bus
from hybrid_agent.config import Settings
from hybrid_agent.triggers.cron import CronSource
from hybrid_agent.triggers.files import FileWatcher, watch_root
from hybrid_agent.bus.leases import make_lease, new_holder
from hybrid_agent.triggers.leader import lead
from hybrid_agent.triggers.outbox import Outbox
from hybrid_agent.triggers.rules import RuleFile, load_rules

LEASE_KEY = "hybrid-agent:triggers"


def check_sources(rules: RuleFile) -> None:
    """What only the host can tell (the watched folders exist), checked before anything
    starts; ValueError naming the watch."""
    for watch in rules.watches:
        watch_root(watch)


async def run_trigger_sources(settings: Settings, bus: Bus, sessions: async_sessionmaker[AsyncSession],
                              stop: asyncio.Event, *, lease_key: str = LEASE_KEY) -> None:
    """Contest the trigger lease until ``stop``; run the watches and schedules while it is ours."""
    rules = load_rules(settings.rules_path)
    check_sources(rules)
    outbox = Outbox(bus, sessions)

    async def sources(leading: asyncio.Event) -> None:
        await asyncio.gather(FileWatcher(rules.watches, outbox.emit).run(leading),
                             CronSource(settings, sessions, outbox.emit, schedules=rules.schedules).run(leading))

    lease = make_lease(settings.redis_url, key=lease_key, holder=new_holder(), ttl_s=settings.trigger_lease_ttl_s)
    try:
        await lead(lease, stop, sources, ttl_s=settings.trigger_lease_ttl_s)
    finally:
        await lease.close()
