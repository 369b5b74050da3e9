"""Every SQL statement of the project. Keyword-only functions that take the session; the
caller owns the transaction (``async with sessionmaker.begin() as session``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hybrid_agent.store.tables import EventRow, JournalRow, StepRow, TaskRow, TokenRow, utcnow

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "rolled_back"})
# Not run on delivery: ended, or parked until a human decides.
NOT_RUNNABLE = TERMINAL | {"awaiting_approval"}


async def _insert_ignoring_duplicates(session: AsyncSession, table: type, rows: Sequence[dict[str, Any]]) -> int:
    """Rows inserted. executemany with one cached statement: a multi-VALUES statement
    would be recompiled for every batch."""
    insert = sqlite_insert if session.bind.dialect.name == "sqlite" else pg_insert
    result = await session.execute(insert(table.__table__).on_conflict_do_nothing(), list(rows))
    return int(result.rowcount)


async def insert_events_and_tasks(
    session: AsyncSession, *, events: Sequence[dict[str, Any]], tasks: Sequence[dict[str, Any]]
) -> list[Row[tuple[str, str, str | None]]]:
    """Insert events and their tasks, ignoring ones already stored (redelivery, duplicate
    dedup key). Returns those of ``tasks`` that are still queued, so a caller that crashed
    between commit and publish republishes them on redelivery. Each row has ``id``,
    ``queue`` and ``event_id``."""
    if events and await _insert_ignoring_duplicates(session, EventRow, events) < len(events):
        # Some were known: an event whose dedup key was stored under another id (a
        # duplicate from outside JetStream's window) was not inserted, nor may its task be.
        stored = set(await session.scalars(select(EventRow.id).where(EventRow.id.in_([e["id"] for e in events]))))
        tasks = [task for task in tasks if task.get("event_id") is None or task["event_id"] in stored]
    if tasks:
        rows = [{"deliveries": 0, "created_at": utcnow(), **task} for task in tasks]
        await _insert_ignoring_duplicates(session, TaskRow, rows)
    ids = [task["id"] for task in tasks]
    if not ids:
        return []
    # Columns, not ORM objects: this runs for every routed batch.
    query = select(TaskRow.id, TaskRow.queue, TaskRow.event_id).where(TaskRow.id.in_(ids), TaskRow.status == "queued")
    return list(await session.execute(query))


async def insert_event_with_task(session: AsyncSession, *, event: dict[str, Any], task: dict[str, Any]) -> None:
    """A new event and its task (a submission): plain inserts, a duplicate is an error."""
    await session.execute(insert(EventRow), [event])
    await session.execute(insert(TaskRow), [{"deliveries": 0, "created_at": utcnow(), **task}])


async def event_exists(session: AsyncSession, *, dedup_key: str) -> bool:
    return (await session.scalar(select(EventRow.id).where(EventRow.dedup_key == dedup_key))) is not None


async def mark_events_published(session: AsyncSession, *, event_ids: Sequence[str], at: datetime) -> None:
    await session.execute(
        update(EventRow).where(EventRow.id.in_(list(event_ids)), EventRow.published_at.is_(None)).values(published_at=at)
    )


async def add_journal(
    session: AsyncSession, *, kind: str, detail: dict[str, Any], task_id: str | None = None, event_id: str | None = None
) -> None:
    await session.execute(insert(JournalRow), [{"kind": kind, "detail": detail, "task_id": task_id,
                                                "event_id": event_id, "at": utcnow()}])


async def add_journal_many(session: AsyncSession, *, entries: Sequence[dict[str, Any]]) -> None:
    if entries:
        await session.execute(JournalRow.__table__.insert(), [{"at": utcnow(), **entry} for entry in entries])


async def journal_for_task(session: AsyncSession, *, task_id: str, event_id: str | None) -> list[JournalRow]:
    clause = JournalRow.task_id == task_id
    if event_id:
        clause = clause | (JournalRow.event_id == event_id)
    return list(await session.scalars(select(JournalRow).where(clause).order_by(JournalRow.at, JournalRow.id)))


async def journal_of_kind(session: AsyncSession, *, kind: str, limit: int = 100) -> list[JournalRow]:
    query = select(JournalRow).where(JournalRow.kind == kind).order_by(JournalRow.id.desc()).limit(limit)
    return list(await session.scalars(query))


async def get_task(session: AsyncSession, *, task_id: str) -> TaskRow | None:
    return await session.get(TaskRow, task_id)


async def list_tasks(session: AsyncSession, *, status: str | None = None, limit: int = 100) -> list[TaskRow]:
    query = select(TaskRow).order_by(TaskRow.created_at.desc()).limit(limit)
    if status:
        query = query.where(TaskRow.status == status)
    return list(await session.scalars(query))


async def count_tasks(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(TaskRow)) or 0)


async def get_steps(session: AsyncSession, *, task_id: str) -> list[StepRow]:
    return list(await session.scalars(select(StepRow).where(StepRow.task_id == task_id).order_by(StepRow.n)))


async def start_task(session: AsyncSession, *, task_id: str, isolation: str, workspace: str) -> TaskRow | None:
    """Mark a delivered task running; None when it is unknown or already finished (a
    duplicate delivery, which the caller acks and drops)."""
    task = await session.get(TaskRow, task_id, with_for_update=session.bind.dialect.name != "sqlite")
    if task is None or task.status in NOT_RUNNABLE:
        return None
    task.status = "running"
    task.isolation = isolation
    task.workspace = workspace
    task.deliveries += 1
    task.started_at = task.started_at or utcnow()
    return task


async def add_step(session: AsyncSession, *, task_id: str, step: dict[str, Any]) -> None:
    """Journal one step; a step number already journaled (redelivery) is kept as it was."""
    await _insert_ignoring_duplicates(session, StepRow, [{"task_id": task_id, **step}])


async def finish_task(
    session: AsyncSession, *, task_id: str, status: str, result: dict[str, Any] | None, error: str | None
) -> None:
    await session.execute(
        update(TaskRow)
        .where(TaskRow.id == task_id)
        .values(status=status, result=result, error=error, finished_at=utcnow())
    )


async def await_approval(session: AsyncSession, *, task_id: str, pending: dict[str, Any]) -> None:
    """Park a task on a call that needs a human; ``result.pending`` holds the call and the
    policy's decision."""
    await session.execute(update(TaskRow).where(TaskRow.id == task_id)
                          .values(status="awaiting_approval", result={"pending": pending}))


async def requeue_task(session: AsyncSession, *, task_id: str) -> None:
    await session.execute(update(TaskRow).where(TaskRow.id == task_id, TaskRow.status == "running").values(status="queued"))


async def add_token(session: AsyncSession, *, name: str, role: str, token_hash: str) -> None:
    session.add(TokenRow(name=name, role=role, token_hash=token_hash, created_at=utcnow()))


async def find_token(session: AsyncSession, *, token_hash: str) -> TokenRow | None:
    query = select(TokenRow).where(TokenRow.token_hash == token_hash, TokenRow.revoked_at.is_(None))
    return await session.scalar(query)


async def task_for_dedup_key(session: AsyncSession, *, dedup_key: str) -> str:
    query = select(TaskRow.id).join(EventRow, TaskRow.event_id == EventRow.id).where(EventRow.dedup_key == dedup_key)
    return str(await session.scalar(query))


async def succeeded_steps(session: AsyncSession, *, limit: int) -> list[tuple[str, dict[str, Any]]]:
    """(goal, tool call) of the steps that worked in tasks that succeeded, newest task
    first and each task's steps in order: what the playbook expert recalls. ``finish``
    is left out (it ends a task, it does not do anything); a step without a call has a
    NULL tool, which the comparison drops too."""
    query = (select(TaskRow.goal, StepRow.tool_call).join(StepRow, StepRow.task_id == TaskRow.id)
             .where(TaskRow.status == "succeeded", StepRow.ok.is_(True),
                    StepRow.tool_call["tool"].as_string() != "finish")
             .order_by(TaskRow.finished_at.desc(), TaskRow.id, StepRow.n).limit(limit))
    return [(goal, call) for goal, call in await session.execute(query)]
