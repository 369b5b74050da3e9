"""Journal entries written in batches, off the hot path: many submissions or routed
batches share one transaction. An entry not yet written when the process dies is lost
from the journal only; the state it describes (an event published, a task enqueued) is
recovered from the rows and the bus, so nothing of the work is lost with it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.store import queries
from hybrid_agent.store.tables import utcnow

log = logging.getLogger(__name__)


class JournalWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, delay_s: float = 0.02) -> None:
        self.sessions = sessions
        self.delay_s = delay_s
        self._entries: list[dict[str, Any]] = []
        self._published: list[str] = []
        self._scheduled: asyncio.Task[None] | None = None   # the flush waiting out delay_s
        self._writing: set[asyncio.Task[None]] = set()       # every background flush until it ends

    def add(self, entries: list[dict[str, Any]], *, published_event_ids: list[str] = ()) -> None:
        """Queue entries (and events to mark published); written within ``delay_s``, each
        stamped now: the journal is read in order of ``at``, not of writing."""
        now = utcnow()
        self._entries.extend({"at": now, **entry} for entry in entries)
        self._published.extend(published_event_ids)
        if self._scheduled is None:
            self._scheduled = asyncio.create_task(self._flush_soon())
            self._writing.add(self._scheduled)
            self._scheduled.add_done_callback(self._writing.discard)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.delay_s)
        self._scheduled = None   # what is added from now on is written by the next one
        await self.flush()

    async def flush(self) -> None:
        """Write what is queued now."""
        entries, published, self._entries, self._published = self._entries, self._published, [], []
        if not entries and not published:
            return
        try:
            async with self.sessions.begin() as session:
                await queries.add_journal_many(session, entries=entries)
                if published:
                    await queries.mark_events_published(session, event_ids=published, at=utcnow())
        except Exception:
            log.exception("writing %d journal entries failed", len(entries))

    async def close(self) -> None:
        """Write what is queued, and wait for every flush in flight to end. A flush is
        awaited, never cancelled: cancelled inside its transaction, it could leave its
        connection open mid-transaction, holding locks (PostgreSQL then blocks a DROP or
        ALTER of the table until the server drops it)."""
        await self.flush()
        while self._writing:
            await asyncio.gather(*self._writing)
