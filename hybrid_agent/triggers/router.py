"""The router: consumes EVENTS in batches, applies the rules, writes the tasks and each
event's rule decisions in one transaction per batch (SQLite commits one row at a time far
slower than JetStream delivers), publishes the tasks on TASKS, then acks the events."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from nats.aio.msg import Msg
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.consumer import fetch_batches
from hybrid_agent.bus.messages import Event, TaskMessage
from hybrid_agent.store import queries
from hybrid_agent.store.journal_writer import JournalWriter
from hybrid_agent.triggers.rules import Decision, RuleFile, decide, event_row

log = logging.getLogger(__name__)

# File events arrive after their debounce; writes of a task that ended this recently are still its own.
OWN_WRITES_GRACE_S = 30.0


class Router:
    def __init__(self, bus: Bus, sessions: async_sessionmaker[AsyncSession], *, rules: RuleFile | None = None,
                 batch: int = 500, retry_delay_s: float = 2.0) -> None:
        self.bus = bus
        self.rules = rules or RuleFile()
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
        """Store events, decisions and tasks, publish the still-queued tasks, journal both.
        Idempotent: a redelivered event republishes its queued task under the same dedup key."""
        decided = [(event, decide(event, self.rules)) for _, event in events]
        async with self.sessions.begin() as session:
            stored = await queries.insert_events(
                session, events=[event_row(event, _records(decisions)) for event, decisions in decided])
            tasks = [await self._task_of(session, event, decision) for event, decisions in decided
                     if event.id in stored for decision in decisions if decision.matched]
            queued = await queries.insert_tasks(session, tasks=[task for task in tasks if task is not None])
            # Trigger events were stored by the outbox before their decisions were known.
            await queries.set_event_routing(session, routing=[
                (event.id, _records(decisions)) for event, decisions in decided
                if event.id in stored and event.source != "user"])
            await queries.add_journal_many(session, entries=[
                {"kind": "incident.malformed_event", "task_id": None, "event_id": None,
                 "detail": {"subject": msg.subject, "error": error, "data": msg.data[:500].decode(errors="replace")}}
                for msg, error in malformed])
        acks = await self.bus.publish_tasks([TaskMessage(task_id=task.id, queue=task.queue, priority=task.priority)
                                              for task in queued])
        rules = {decision.task["id"]: decision.rule for _, decisions in decided for decision in decisions
                 if decision.task is not None}
        self.journal.add([
            {"kind": "task.enqueued", "task_id": task.id, "event_id": task.event_id,
             "detail": {"stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate),
                        "rule": rules.get(task.id)}}
            for task, ack in zip(queued, acks)])
        return [task.id for task in queued]

    @staticmethod
    async def _task_of(session: AsyncSession, event: Event, decision: Decision) -> dict | None:
        """The decision's task, unless the event is the rule's own tasks' writes or the
        rule is cooling down for the resource (then the decision says so, and no task)."""
        own = await _own_writes(session, event, decision.rule)
        if own is not None:
            decision.matched, decision.task = False, None
            decision.why.append(f"the agent's own writes (task {own} of this rule works there)")
            return None
        if decision.cooldown is not None:
            resource, until = decision.cooldown
            if not await queries.take_cooldown(session, rule=decision.rule, resource=resource, until=until,
                                               now=event.created_at, event_id=event.id):
                decision.matched, decision.task = False, None
                decision.why.append(f"cooling down for {resource}")
                return None
        return decision.task

    @staticmethod
    def _parse(messages: list[Msg]) -> tuple[list[tuple[Msg, Event]], list[tuple[Msg, str]]]:
        events, malformed = [], []
        for msg in messages:
            try:
                events.append((msg, Event.model_validate_json(msg.data)))
            except ValidationError as exc:
                malformed.append((msg, str(exc.errors()[0]["msg"])))
        return events, malformed


def _records(decisions: list[Decision]) -> list[dict]:
    return [decision.record() for decision in decisions]


async def _own_writes(session: AsyncSession, event: Event, rule: str) -> str | None:
    """The rule's task whose workspace holds every path of this file event, if any: a
    task's own writes must not start another task of the same rule (a loop)."""
    if event.source != "file" or not event.payload.get("paths"):
        return None
    root = Path(str(event.payload.get("root", "/")))
    changed = [(root / str(path)).resolve() for path in event.payload["paths"]]
    since = event.created_at - timedelta(seconds=OWN_WRITES_GRACE_S)
    for task_id, workspace in await queries.rule_tasks_since(session, rule=rule, since=since):
        if workspace and all(path.is_relative_to(Path(workspace).resolve()) for path in changed):
            return str(task_id)
    return None
