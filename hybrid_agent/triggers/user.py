"""The user trigger: a REST or CLI submission becomes a ``user`` event. The event and its
queued task are stored first (the outbox), so the submitter gets a task id it can read at
once; then the event is published and the router takes it from there. While the bus is
unreachable the submission still succeeds: the outbox publishes the event later."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.bus.connection import Bus, BusError
from hybrid_agent.bus.messages import Event, new_id
from hybrid_agent.store import queries
from hybrid_agent.store.journal_writer import JournalWriter
from hybrid_agent.triggers.rules import DEFAULT_RULE, default_rule, event_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    task_id: str
    event_id: str
    duplicate: bool


async def submit(
    bus: Bus, sessions: async_sessionmaker[AsyncSession], journal: JournalWriter, *, goal: str,
    workspace: str | None, requested_by: str, idempotency_key: str | None = None, check: str | None = None,
    dry_run: bool = False, queue: str = "default", priority: int = 0,
) -> Submission:
    event = Event(source="user", kind="task", payload={
        "goal": goal, "workspace": workspace, "task_id": new_id(), "requested_by": requested_by, "check": check,
        "dry_run": dry_run, "queue": queue, "priority": priority,
    })
    if idempotency_key:
        event.dedup_key = f"user:{requested_by}:{idempotency_key}"
    task = default_rule(event)
    async with sessions.begin() as session:
        # Only a client's key can repeat; a fresh event id cannot, so skip the lookup then.
        if idempotency_key and await queries.event_exists(session, dedup_key=event.dedup_key):
            existing = await queries.task_for_dedup_key(session, dedup_key=event.dedup_key)
            return Submission(task_id=existing, event_id="", duplicate=True)
        routing = [{"rule": DEFAULT_RULE, "matched": True, "why": ["a user submission"], "task_id": task["id"]}]
        await queries.insert_event_with_task(session, event=event_row(event, routing), task=task)
    try:
        ack = await bus.publish_event(event)
    except BusError as exc:   # stored: the outbox publishes it when the bus is back
        log.warning("task %s waits in the outbox: %s", task["id"], exc)
        return Submission(task_id=task["id"], event_id=event.id, duplicate=False)
    journal.add([{"kind": "event.published", "event_id": event.id, "task_id": task["id"],
                  "detail": {"stream": ack.stream, "seq": ack.seq, "source": "user"}}], published_event_ids=[event.id])
    return Submission(task_id=task["id"], event_id=event.id, duplicate=False)
