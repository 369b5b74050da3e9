"""The router: consumes EVENTS in batches, applies rules, writes the tasks in one
transaction per batch (SQLite commits one row at a time far slower than JetStream
delivers), publishes them on TASKS, then acks the events."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.consumer import fetch_batches
from hybrid_agent.bus.messages import Event, TaskMessage
from hybrid_agent.store import queries
from hybrid_agent.store.journal_writer import JournalWriter
from hybrid_agent.triggers.rules import default_rule, event_row

log = logging.getLogger(__name__)


class Router:
    def __init__(self, bus: Bus, sessions: async_sessionmaker[AsyncSession], *, batch: int = 500,
                 retry_delay_s: float = 2.0) -> None:
        self.bus = bus
        self.sessions = sessions
        self.journal = JournalWriter(sessions)
        self.batch = batch
        self.retry_delay_s = retry_delay_s

    async def run(self, stop: asyncio.Event) -> None:
        subscription = await self.bus.router_subscription()
        try:
            async for messages in fetch_batches(subscription, batch=self.batch, stop=stop, wait_s=0.5):
                await self.handle(messages)
        finally:
            await self.journal.close()

    async def handle(self, messages: list[Msg]) -> None:
        """Route a batch; every message ends acked, terminated (malformed) or nak'd (retry)."""
        events, malformed = self._parse(messages)
        try:
            await self.route(events, malformed=malformed)
        except Exception:
            log.exception("routing %d events failed; they will be redelivered", len(events))
            await asyncio.gather(*(msg.nak(delay=self.retry_delay_s) for msg, _ in events))
            return
        await asyncio.gather(*(msg.ack() for msg, _ in events), *(msg.term() for msg, _ in malformed))

    async def route(self, events: list[tuple[Msg, Event]], *, malformed: list[tuple[Msg, str]] = ()) -> list[str]:
        """Store events and tasks, publish the still-queued tasks, journal both. Idempotent:
        a redelivered event republishes its queued task under the same dedup key."""
        tasks = [default_rule(event) for _, event in events]
        async with self.sessions.begin() as session:
            queued = await queries.insert_events_and_tasks(
                session, events=[event_row(event) for _, event in events], tasks=tasks)
            await queries.add_journal_many(session, entries=[
                {"kind": "incident.malformed_event", "task_id": None, "event_id": None,
                 "detail": {"subject": msg.subject, "error": error, "data": msg.data[:500].decode(errors="replace")}}
                for msg, error in malformed])
        acks = await self.bus.publish_tasks([TaskMessage(task_id=task.id, queue=task.queue) for task in queued])
        self.journal.add([
            {"kind": "task.enqueued", "task_id": task.id, "event_id": task.event_id,
             "detail": {"stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate), "rule": "default"}}
            for task, ack in zip(queued, acks)])
        return [task.id for task in queued]

    @staticmethod
    def _parse(messages: list[Msg]) -> tuple[list[tuple[Msg, Event]], list[tuple[Msg, str]]]:
        events, malformed = [], []
        for msg in messages:
            try:
                events.append((msg, Event.model_validate_json(msg.data)))
            except ValidationError as exc:
                malformed.append((msg, str(exc.errors()[0]["msg"])))
        return events, malformed
