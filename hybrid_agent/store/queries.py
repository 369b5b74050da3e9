"""Every SQL statement of the project. Keyword-only functions that take the session; the
caller owns the transaction (``async with sessionmaker.begin() as session``)."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, Insert, Row, Table, bindparam, case, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from hybrid_agent.store.direct_sqlite import direct_connection
from hybrid_agent.store.tables import (
    ApprovalRow,
    CompensationRow,
    CooldownRow,
    EventRow,
    FenceRow,
    JournalRow,
    RestoreRow,
    ScheduleRow,
    SnapshotRow,
    StepRow,
    TaskRow,
    TokenRow,
    utcnow,
)

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "rolled_back"})
# Not run on delivery: ended, or parked until a human decides.
NOT_RUNNABLE = TERMINAL | {"awaiting_approval"}

# Statements of every routed or worked batch, constants so that ``direct_sqlite`` compiles
# each once for SQLite (where they run on the driver's own connection).
_TASKS = TaskRow.__table__
_NOW = bindparam("now", type_=_TASKS.c.started_at.type)
START_TASK = (update(_TASKS).where(_TASKS.c.id == bindparam("task_id"),
                                   *(_TASKS.c.status != status for status in sorted(NOT_RUNNABLE)))
              .values(status="running", isolation=bindparam("to_isolation"), workspace=bindparam("to_workspace"),
                      deliveries=_TASKS.c.deliveries + 1, started_at=func.coalesce(_TASKS.c.started_at, _NOW),
                      heartbeat_at=_NOW, waiting_for=None)
              .returning(_TASKS.c.id))
FINISH_TASK = (update(_TASKS).where(_TASKS.c.id == bindparam("task_id"))
               .values(status=bindparam("to_status"), result=bindparam("to_result"), error=bindparam("to_error"),
                       finished_at=bindparam("at")))
ADD_JOURNAL = JournalRow.__table__.insert()


async def _insert_ignoring_duplicates(session: AsyncSession, table: type, rows: Sequence[dict[str, Any]]) -> int:
    """Rows inserted. executemany with one cached statement: a multi-VALUES statement
    would be recompiled for every batch."""
    if direct := await direct_connection(session):
        statement = _sqlite_insert_ignoring(table.__table__)
        return sum(direct.execute_many(statement, group) for group in _by_keys(rows))
    return len(await _insert_new(session, table, rows))


async def _insert_new(session: AsyncSession, table: type, rows: Sequence[dict[str, Any]],
                      *, returning: Sequence[Any] = ()) -> list[Any]:
    """Insert ignoring known rows; the inserted ones' ``returning`` columns (default: the
    key), each as a named tuple."""
    columns = tuple(returning or table.__table__.primary_key.columns)
    if direct := await direct_connection(session):
        statement, named = _sqlite_insert_ignoring(table.__table__, columns), _named_row(tuple(c.key for c in columns))
        return [named(*found) for row in rows for found in direct.execute(statement, row)]
    insert = sqlite_insert if session.bind.dialect.name == "sqlite" else pg_insert
    # Counted by RETURNING: psycopg reports no rowcount (-1) for these inserts.
    statement = insert(table.__table__).on_conflict_do_nothing().returning(*columns)
    return [row for group in _by_keys(rows) for row in await session.execute(statement, group)]


async def _execute_many(session: AsyncSession, statement: Executable, rows: Sequence[dict[str, Any]]) -> None:
    """``statement`` for each of ``rows``: on SQLite's own connection where it can
    (``direct_sqlite``), else as SQLAlchemy's executemany; a statement per group of keys."""
    direct = await direct_connection(session)
    for group in _by_keys(rows):
        if direct:
            direct.execute_many(statement, group)
        else:
            await session.execute(statement, group)


def _by_keys(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows in groups of the same keys, in order of first appearance: an executemany takes
    its columns from its first row, so a later row's other keys would be dropped."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.values())


@lru_cache(maxsize=64)
def _sqlite_insert_ignoring(table: Table, returning: tuple[Column[Any], ...] = ()) -> Insert:
    """One statement object per table and RETURNING: ``direct_sqlite`` compiles each once."""
    statement = sqlite_insert(table).on_conflict_do_nothing()
    return statement.returning(*returning) if returning else statement


@lru_cache(maxsize=64)
def _named_row(names: tuple[str, ...]) -> type[tuple[Any, ...]]:
    return namedtuple("Inserted", names)  # type: ignore[return-value]


async def insert_events_and_tasks(
    session: AsyncSession, *, events: Sequence[dict[str, Any]], tasks: Sequence[dict[str, Any]]
) -> list[Any]:
    """Insert events and their tasks, ignoring ones already stored (redelivery, duplicate
    dedup key). Returns those of ``tasks`` that are still queued, so a caller that crashed
    between commit and publish republishes them on redelivery. Each row has ``id``,
    ``queue``, ``priority`` and ``event_id``."""
    stored = await insert_events(session, events=events)
    # An event whose dedup key was stored under another id (a duplicate from outside
    # JetStream's window) was not inserted, nor may its task be.
    refused = {event["id"] for event in events} - stored
    tasks = [task for task in tasks if task.get("event_id") not in refused]
    return await insert_tasks(session, tasks=tasks)


async def insert_events(session: AsyncSession, *, events: Sequence[dict[str, Any]]) -> set[str]:
    """Insert events ignoring known ones; the ids of ``events`` now stored (new or not)."""
    ids = {event["id"] for event in events}
    if events and await _insert_ignoring_duplicates(session, EventRow, events) < len(events):
        return set(await session.scalars(select(EventRow.id).where(EventRow.id.in_(list(ids)))))
    return ids


async def insert_tasks(session: AsyncSession, *, tasks: Sequence[dict[str, Any]]) -> list[Any]:
    """Insert tasks ignoring known ones; those of ``tasks`` still queued, each with ``id``,
    ``queue``, ``priority`` and ``event_id``."""
    if not tasks:
        return []
    rows = [{"deliveries": 0, "created_at": utcnow(), **task} for task in tasks]
    # Columns, not ORM objects: this runs for every routed batch.
    columns = (TaskRow.id, TaskRow.queue, TaskRow.priority, TaskRow.event_id)
    inserted = await _insert_new(session, TaskRow, rows, returning=(*columns, TaskRow.status))
    if len(inserted) == len(rows):   # all new (the usual case): no need to read them back
        return [row for row in inserted if row.status == "queued"]
    query = select(*columns).where(TaskRow.id.in_([task["id"] for task in tasks]), TaskRow.status == "queued")
    return list(await session.execute(query))


async def insert_event_with_task(session: AsyncSession, *, event: dict[str, Any], task: dict[str, Any]) -> None:
    """A new event and its task (a submission): plain inserts, a duplicate is an error."""
    await session.execute(insert(EventRow), [event])
    await session.execute(insert(TaskRow), [{"deliveries": 0, "created_at": utcnow(), **task}])


async def event_exists(session: AsyncSession, *, dedup_key: str) -> bool:
    return (await session.scalar(select(EventRow.id).where(EventRow.dedup_key == dedup_key))) is not None


async def store_event(session: AsyncSession, *, event: dict[str, Any]) -> str | None:
    """Store a trigger's event in the outbox; None when its dedup key is known already
    (a replayed delivery), else its id."""
    if await _insert_ignoring_duplicates(session, EventRow, [event]) == 1:
        return str(event["id"])
    return None


async def event_id_for_dedup_key(session: AsyncSession, *, dedup_key: str) -> str | None:
    return await session.scalar(select(EventRow.id).where(EventRow.dedup_key == dedup_key))


async def unpublished_events(session: AsyncSession, *, older_than: datetime, limit: int = 500) -> list[EventRow]:
    """The outbox: events stored but not acknowledged by the bus, oldest first."""
    query = (select(EventRow).where(EventRow.published_at.is_(None), EventRow.created_at <= older_than)
             .order_by(EventRow.created_at, EventRow.id).limit(limit))
    return list(await session.scalars(query))


async def get_event(session: AsyncSession, *, event_id: str) -> EventRow | None:
    return await session.get(EventRow, event_id)


async def list_events(session: AsyncSession, *, source: str | None = None, limit: int = 100) -> list[EventRow]:
    query = select(EventRow).order_by(EventRow.created_at.desc(), EventRow.id).limit(limit)
    if source is not None:
        query = query.where(EventRow.source == source)
    return list(await session.scalars(query))


async def set_event_routing(session: AsyncSession, *, routing: Sequence[tuple[str, list[Any]]]) -> None:
    """Record each event's rule decisions: (event id, decisions); one executemany."""
    if routing:
        statement = (update(EventRow.__table__).where(EventRow.id == bindparam("event_id"))
                     .values(routing=bindparam("decisions")))
        await session.execute(statement, [{"event_id": event_id, "decisions": decisions}
                                          for event_id, decisions in routing])


async def take_cooldown(session: AsyncSession, *, rule: str, resource: str, until: datetime, now: datetime,
                        event_id: str) -> bool:
    """Start the rule's cooldown for the resource; False while an earlier one still runs
    (the rule must not fire). An expired cooldown is taken over."""
    row = await session.get(CooldownRow, (rule, resource), with_for_update=True)
    if row is None:
        inserted = await _insert_ignoring_duplicates(session, CooldownRow, [
            {"rule": rule, "resource": resource, "until": until, "event_id": event_id}])
        return inserted == 1
    if row.event_id == event_id:   # the same event redelivered: it took the cooldown itself
        return True
    result = await session.execute(
        update(CooldownRow).where(CooldownRow.rule == rule, CooldownRow.resource == resource, CooldownRow.until <= now)
        .values(until=until, event_id=event_id).execution_options(synchronize_session=False))
    return result.rowcount == 1


async def rule_tasks_since(session: AsyncSession, *, rule: str, since: datetime) -> list[Row[tuple[str, str | None]]]:
    """(id, workspace) of the rule's tasks not ended, or ended after ``since``."""
    query = select(TaskRow.id, TaskRow.workspace).where(
        TaskRow.rule == rule, TaskRow.status.not_in(TERMINAL) | (TaskRow.finished_at >= since))
    return list(await session.execute(query))


async def list_schedules(session: AsyncSession) -> list[ScheduleRow]:
    return list(await session.scalars(select(ScheduleRow).order_by(ScheduleRow.name)))


async def get_schedule(session: AsyncSession, *, name: str) -> ScheduleRow | None:
    return await session.get(ScheduleRow, name)


async def upsert_schedule(session: AsyncSession, *, schedule: dict[str, Any]) -> None:
    row = await session.get(ScheduleRow, schedule["name"])
    if row is None:
        session.add(ScheduleRow(created_at=utcnow(), **schedule))
        return
    for key, value in schedule.items():
        setattr(row, key, value)


async def delete_schedule(session: AsyncSession, *, name: str) -> bool:
    row = await session.get(ScheduleRow, name)
    if row is None:
        return False
    await session.delete(row)
    return True


async def mark_events_published(session: AsyncSession, *, event_ids: Sequence[str], at: datetime) -> None:
    await session.execute(
        update(EventRow).where(EventRow.id.in_(list(event_ids)), EventRow.published_at.is_(None)).values(published_at=at)
    )


async def add_journal(
    session: AsyncSession, *, kind: str, detail: dict[str, Any], task_id: str | None = None, event_id: str | None = None
) -> None:
    await add_journal_many(session, entries=[{"kind": kind, "detail": detail, "task_id": task_id, "event_id": event_id}])


async def add_journal_many(session: AsyncSession, *, entries: Sequence[dict[str, Any]]) -> None:
    if entries:
        now = utcnow()
        await _execute_many(session, ADD_JOURNAL, [{"at": now, **entry} for entry in entries])


async def journal_for_task(session: AsyncSession, *, task_id: str, event_id: str | None) -> list[JournalRow]:
    clause = JournalRow.task_id == task_id
    if event_id:
        clause = clause | (JournalRow.event_id == event_id)
    return list(await session.scalars(select(JournalRow).where(clause).order_by(JournalRow.at, JournalRow.id)))


async def journal_entry(session: AsyncSession, *, task_id: str, kind: str) -> JournalRow | None:
    """The task's latest journal entry of ``kind``."""
    query = (select(JournalRow).where(JournalRow.task_id == task_id, JournalRow.kind == kind)
             .order_by(JournalRow.id.desc()).limit(1))
    return await session.scalar(query)


async def journal_of_kind(session: AsyncSession, *, kind: str, limit: int = 100) -> list[JournalRow]:
    query = select(JournalRow).where(JournalRow.kind == kind).order_by(JournalRow.id.desc()).limit(limit)
    return list(await session.scalars(query))


async def ping(session: AsyncSession) -> None:
    """The store answers (raises when it does not)."""
    await session.execute(select(1))


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
    task.heartbeat_at = utcnow()
    task.waiting_for = None
    return task


async def start_tasks(session: AsyncSession, *, workspaces: Mapping[str, str], isolation: str) -> set[str]:
    """Mark several delivered tasks running in one statement (task id -> its workspace), as
    ``start_task`` does one; the ids started. Unknown and finished ones (duplicate
    deliveries) are left out, for the caller to ack and drop. The UPDATE locks the rows it
    changes, as ``start_task``'s SELECT ... FOR UPDATE does."""
    if not workspaces:
        return set()
    now = utcnow()
    if direct := await direct_connection(session):
        return {row[0] for task_id, workspace in workspaces.items() for row in direct.execute(
            START_TASK, {"task_id": task_id, "to_workspace": workspace, "to_isolation": isolation, "now": now})}
    tasks = TaskRow.__table__   # the table, not the ORM entity: half the CPU a batch
    statement = (update(tasks).where(tasks.c.id.in_(list(workspaces)), tasks.c.status.not_in(NOT_RUNNABLE))
                 .values(status="running", isolation=isolation, workspace=case(dict(workspaces), value=tasks.c.id),
                         deliveries=tasks.c.deliveries + 1, started_at=func.coalesce(tasks.c.started_at, now),
                         heartbeat_at=now, waiting_for=None)
                 .returning(tasks.c.id))
    return set((await session.scalars(statement)).all())


async def set_waiting(session: AsyncSession, *, task_id: str, waiting_for: str) -> None:
    """Say what a delivered task waits for before it can start (while it is still queued)."""
    await session.execute(update(TaskRow).where(TaskRow.id == task_id, TaskRow.status == "queued")
                          .values(waiting_for=waiting_for[:500]))


class FencedOut(Exception):
    """A write on behalf of a resource lease that has since passed to a newer holder."""


async def check_fence(session: AsyncSession, *, resource: str, token: int) -> None:
    """Admit a write under fencing token ``token`` of ``resource``: refused (FencedOut)
    once a higher token was seen. Called in the write's own transaction."""
    await _insert_ignoring_duplicates(session, FenceRow, [{"resource": resource, "token": token}])
    result = await session.execute(
        update(FenceRow).where(FenceRow.resource == resource, FenceRow.token <= token).values(token=token)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise FencedOut(f"resource {resource}: token {token} is stale (the lease passed to a newer holder)")


async def beat(session: AsyncSession, *, task_id: str) -> None:
    """The running task's worker is alive."""
    await session.execute(update(TaskRow).where(TaskRow.id == task_id, TaskRow.status == "running")
                          .values(heartbeat_at=utcnow()))


async def reap_stale(session: AsyncSession, *, silent_since: datetime) -> list[tuple[str, str, int]]:
    """Running tasks whose worker sent no heartbeat since ``silent_since``, put back to
    ``queued``; (id, queue, priority) of each. The guarded update lets one reaper win per task."""
    stale = list(await session.execute(select(TaskRow.id, TaskRow.queue, TaskRow.priority).where(
        TaskRow.status == "running", TaskRow.heartbeat_at < silent_since)))
    reaped = []
    for task_id, queue, priority in stale:
        result = await session.execute(
            update(TaskRow).where(TaskRow.id == task_id, TaskRow.status == "running",
                                  TaskRow.heartbeat_at < silent_since)
            .values(status="queued").execution_options(synchronize_session=False))
        if result.rowcount == 1:
            reaped.append((task_id, queue, priority))
    return reaped


async def add_step(session: AsyncSession, *, task_id: str, step: dict[str, Any]) -> None:
    """Journal one step; a step number already journaled (redelivery) is kept as it was."""
    await _insert_ignoring_duplicates(session, StepRow, [{"task_id": task_id, **step}])


async def finish_task(
    session: AsyncSession, *, task_id: str, status: str, result: dict[str, Any] | None, error: str | None
) -> None:
    await finish_tasks(session, finished=[{"id": task_id, "status": status, "result": result, "error": error}])


async def add_steps(session: AsyncSession, *, steps: Sequence[dict[str, Any]]) -> None:
    """Journal steps of several tasks (each with its ``task_id``) in one statement, as
    ``add_step`` does one."""
    if steps:
        await _insert_ignoring_duplicates(session, StepRow, steps)


async def finish_tasks(session: AsyncSession, *, finished: Sequence[dict[str, Any]]) -> None:
    """End several tasks in one statement (an UPDATE by primary key per row, executed as
    one batch); each of ``finished`` has ``id``, ``status``, ``result`` and ``error``."""
    if finished:
        now = utcnow()
        await _execute_many(session, FINISH_TASK, [
            {"task_id": row["id"], "to_status": row["status"], "to_result": row["result"], "to_error": row["error"],
             "at": now} for row in finished])


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


async def add_snapshot(session: AsyncSession, *, snapshot: dict[str, Any]) -> None:
    """Journal a snapshot; one already journaled (a retried write) is kept as it was."""
    await _insert_ignoring_duplicates(session, SnapshotRow, [snapshot])


async def get_snapshot(session: AsyncSession, *, snapshot_id: str) -> SnapshotRow | None:
    return await session.get(SnapshotRow, snapshot_id)


async def list_snapshots(session: AsyncSession, *, task_id: str | None = None, limit: int = 100) -> list[SnapshotRow]:
    query = select(SnapshotRow).order_by(SnapshotRow.created_at.desc()).limit(limit)
    if task_id is not None:
        query = query.where(SnapshotRow.task_id == task_id)
    return list(await session.scalars(query))


async def task_snapshots(session: AsyncSession, *, task_id: str) -> list[SnapshotRow]:
    """A task's snapshots, oldest first: the first is the workspace before the task changed it."""
    query = select(SnapshotRow).where(SnapshotRow.task_id == task_id).order_by(SnapshotRow.step, SnapshotRow.created_at)
    return list(await session.scalars(query))


async def expire_snapshots(session: AsyncSession, *, before: datetime) -> int:
    result = await session.execute(update(SnapshotRow).where(SnapshotRow.created_at < before,
                                                             SnapshotRow.expired_at.is_(None)).values(expired_at=utcnow()))
    return int(result.rowcount)


async def live_manifests(session: AsyncSession) -> set[str]:
    """Manifests of the snapshots not expired: what garbage collection keeps."""
    return set(await session.scalars(select(SnapshotRow.manifest).where(SnapshotRow.expired_at.is_(None))))


async def add_compensation(session: AsyncSession, *, compensation: dict[str, Any]) -> None:
    await session.execute(insert(CompensationRow), [compensation])


async def pending_compensations(session: AsyncSession, *, task_id: str, from_step: int) -> list[CompensationRow]:
    """A task's compensations registered at or after ``from_step`` and not yet run."""
    query = (select(CompensationRow).where(CompensationRow.task_id == task_id, CompensationRow.step >= from_step,
                                           CompensationRow.ran_at.is_(None)).order_by(CompensationRow.id))
    return list(await session.scalars(query))


async def mark_compensation_ran(session: AsyncSession, *, task_id: str | None, step: int | None, command: str,
                                ok: bool, output: str) -> None:
    await session.execute(update(CompensationRow).where(
        CompensationRow.task_id == task_id, CompensationRow.step == step, CompensationRow.command == command,
        CompensationRow.ran_at.is_(None)).values(ran_at=utcnow(), ok=ok, output=output))


async def add_restore(session: AsyncSession, *, restore: dict[str, Any]) -> None:
    await session.execute(insert(RestoreRow), [restore])


async def list_restores(session: AsyncSession, *, snapshot_id: str | None = None,
                        task_id: str | None = None) -> list[RestoreRow]:
    query = select(RestoreRow).order_by(RestoreRow.id)
    if snapshot_id is not None:
        query = query.where(RestoreRow.snapshot_id == snapshot_id)
    if task_id is not None:
        query = query.where(RestoreRow.task_id == task_id)
    return list(await session.scalars(query))


async def mark_rolled_back(session: AsyncSession, *, task_id: str, result: dict[str, Any]) -> None:
    """An ended task whose changes were undone."""
    await session.execute(update(TaskRow).where(TaskRow.id == task_id).values(status="rolled_back", result=result))


async def cancel_task(session: AsyncSession, *, task_id: str) -> str | None:
    """Cancel a task: one not running yet (queued, or parked for approval) ends
    ``cancelled`` at once; a running one is marked for its worker to stop. Returns the
    status it was in, or None when there is no such task."""
    task = await session.get(TaskRow, task_id, with_for_update=session.bind.dialect.name != "sqlite")
    if task is None:
        return None
    status = task.status
    if status in ("queued", "awaiting_approval"):
        task.status, task.finished_at = "cancelled", utcnow()
    elif status == "running" and task.cancel_requested_at is None:
        task.cancel_requested_at = utcnow()
    return status


async def set_task_result(session: AsyncSession, *, task_id: str, result: dict[str, Any]) -> None:
    await session.execute(update(TaskRow).where(TaskRow.id == task_id).values(result=result))


async def add_approval(session: AsyncSession, *, approval: dict[str, Any]) -> None:
    await session.execute(insert(ApprovalRow), [approval])


async def get_approval(session: AsyncSession, *, approval_id: str) -> ApprovalRow | None:
    return await session.get(ApprovalRow, approval_id)


async def list_approvals(session: AsyncSession, *, status: str | None = None, limit: int = 100) -> list[ApprovalRow]:
    query = select(ApprovalRow).order_by(ApprovalRow.created_at.desc()).limit(limit)
    if status is not None:
        query = query.where(ApprovalRow.status == status)
    return list(await session.scalars(query))


async def decide_approval(session: AsyncSession, *, approval_id: str, status: str, by: str, reason: str | None,
                          now: datetime) -> bool:
    """Record a decision on a pending approval that has not expired; False when it was
    decided already or expired (the first decision stands)."""
    result = await session.execute(
        update(ApprovalRow).where(ApprovalRow.id == approval_id, ApprovalRow.status == "pending",
                                  ApprovalRow.expires_at > now)
        .values(status=status, decided_by=by, decided_at=now, reason=reason)
        # SQLite hands back naive datetimes: compare in SQL only, never against loaded rows.
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


async def expire_approvals(session: AsyncSession, *, now: datetime) -> list[ApprovalRow]:
    """Pending approvals past their expiry, now expired (expiry is a rejection)."""
    due = list(await session.scalars(select(ApprovalRow).where(ApprovalRow.status == "pending",
                                                               ApprovalRow.expires_at <= now)))
    for row in due:
        row.status, row.decided_at, row.decided_by, row.reason = "expired", now, "expiry", "not decided in time"
    return due


async def decision_to_resume(session: AsyncSession, *, task_id: str) -> ApprovalRow | None:
    """The task's decided approval that it has not acted on yet."""
    query = (select(ApprovalRow).where(ApprovalRow.task_id == task_id, ApprovalRow.status != "pending",
                                       ApprovalRow.resumed_at.is_(None))
             .order_by(ApprovalRow.created_at.desc()).limit(1))
    return await session.scalar(query)


async def mark_approval_resumed(session: AsyncSession, *, approval_id: str) -> None:
    await session.execute(update(ApprovalRow).where(ApprovalRow.id == approval_id).values(resumed_at=utcnow()))


async def requeue_parked_task(session: AsyncSession, *, task_id: str) -> bool:
    """A parked task goes back to the queue once its approval is decided."""
    result = await session.execute(update(TaskRow).where(TaskRow.id == task_id, TaskRow.status == "awaiting_approval")
                                   .values(status="queued"))
    return result.rowcount == 1


async def revoke_tokens(session: AsyncSession, *, name: str) -> int:
    result = await session.execute(update(TokenRow).where(TokenRow.name == name, TokenRow.revoked_at.is_(None))
                                   .values(revoked_at=utcnow()))
    return int(result.rowcount)


async def counts_by(session: AsyncSession, *, column: Any) -> dict[str, int]:
    """Rows per value of ``column`` (tasks by status, approvals by status, restores by reason)."""
    return {str(value): int(n) for value, n in await session.execute(select(column, func.count()).group_by(column))}


async def count_rows(session: AsyncSession, *, table: type, where: Any = None) -> int:
    query = select(func.count()).select_from(table)
    if where is not None:
        query = query.where(where)
    return int(await session.scalar(query) or 0)


async def histogram(session: AsyncSession, *, value: Any, bounds: Sequence[float]) -> tuple[list[int], float, int]:
    """Cumulative counts of ``value`` at or below each bound, its sum and its count, in one
    query (Prometheus's histogram shape)."""
    columns = [func.sum(case((value <= bound, 1), else_=0)) for bound in bounds]
    row = (await session.execute(select(*columns, func.coalesce(func.sum(value), 0.0), func.count(value)))).one()
    return [int(c or 0) for c in row[:len(bounds)]], float(row[-2] or 0.0), int(row[-1] or 0)


async def decided_approval_times(session: AsyncSession, *, limit: int = 10000) -> list[tuple[datetime, datetime]]:
    """(created, decided) of the latest decided approvals."""
    query = (select(ApprovalRow.created_at, ApprovalRow.decided_at).where(ApprovalRow.decided_at.is_not(None))
             .order_by(ApprovalRow.decided_at.desc()).limit(limit))
    return [(created, decided) for created, decided in await session.execute(query)]


async def tasks_of_event(session: AsyncSession, *, event_id: str) -> list[TaskRow]:
    """The tasks made from one event, oldest first."""
    query = select(TaskRow).where(TaskRow.event_id == event_id).order_by(TaskRow.created_at, TaskRow.id)
    return list(await session.scalars(query))
