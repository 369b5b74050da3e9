"""The outbox every trigger publishes through: an event is stored first (its dedup key is
unique, so a replayed delivery stops here), then published. While the bus is unreachable
events wait in the store; ``flush`` publishes them in the order they were stored, and
JetStream's dedup window (the same ``Nats-Msg-Id``) plus the router's deterministic task
ids make a publish that is repeated after a crash harmless."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.bus.connection import Bus, BusError
from hybrid_agent.bus.messages import Event
from hybrid_agent.store import queries
from hybrid_agent.store.tables import EventRow, utcnow
from hybrid_agent.triggers.rules import event_row

log = logging.getLogger(__name__)

# An event younger than this may still be mid-publish by its emitter; flush leaves it alone.
SETTLE_S = 1.0


@dataclass(frozen=True)
class Emitted:
    event_id: str
    duplicate: bool    # its dedup key was stored before: nothing new happened
    published: bool    # False: the bus was unreachable; it waits in the outbox


class Outbox:
    def __init__(self, bus: Bus, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.bus = bus
        self.sessions = sessions
        self._flushing = asyncio.Lock()

    async def emit(self, event: Event) -> Emitted:
        """Store the event, then publish it; a replayed dedup key does neither."""
        async with self.sessions.begin() as session:
            stored = await queries.store_event(session, event=event_row(event))
            if stored is None:
                existing = await queries.event_id_for_dedup_key(session, dedup_key=event.dedup_key)
                return Emitted(event_id=existing or "", duplicate=True, published=False)
            await queries.add_journal(session, kind="event.received", event_id=event.id,
                                      detail={"source": event.source, "kind": event.kind,
                                              "dedup_key": event.dedup_key})
        published = await self._publish([event])
        return Emitted(event_id=event.id, duplicate=False, published=bool(published))

    async def flush(self) -> int:
        """Publish what waits in the outbox, oldest first; stops at the first failure so
        that order holds. Returns how many were published."""
        async with self._flushing:
            total = 0
            while True:
                async with self.sessions() as session:
                    rows = await queries.unpublished_events(
                        session, older_than=utcnow() - timedelta(seconds=SETTLE_S))
                if not rows:
                    return total
                published = await self._publish([_event_of(row) for row in rows])
                total += published
                if published < len(rows):
                    return total

    async def run(self, stop: asyncio.Event, *, interval_s: float) -> None:
        """Flush every ``interval_s`` until ``stop``."""
        while not stop.is_set():
            try:
                flushed = await self.flush()
                if flushed:
                    log.info("outbox: published %d events that waited for the bus", flushed)
            except Exception:   # the store is down: the next round retries
                log.exception("outbox flush failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)

    async def _publish(self, events: list[Event]) -> int:
        """Publish in order and mark what the bus acknowledged; the count published."""
        acked: list[str] = []
        try:
            for event in events:
                await self.bus.publish_event(event)
                acked.append(event.id)
        except BusError as exc:
            log.warning("bus unreachable; %d events wait in the outbox: %s", len(events) - len(acked), exc)
        if acked:
            async with self.sessions.begin() as session:
                await queries.mark_events_published(session, event_ids=acked, at=utcnow())
        return len(acked)


def _event_of(row: EventRow) -> Event:
    return Event(id=row.id, source=row.source, kind=row.kind, dedup_key=row.dedup_key, payload=row.payload,
                 created_at=row.created_at)
