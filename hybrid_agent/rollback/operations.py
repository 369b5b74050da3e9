"""Rollbacks asked for after the fact, against the SQL journal: back to one snapshot (on
demand), a whole task's change undone (it failed or was cancelled), the interrupted step of
a redelivered task; and garbage collection of contents past retention."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.rollback.errors import SnapshotMissing
from hybrid_agent.rollback.journal import compensation_from_row, save, snapshot_from_row
from hybrid_agent.rollback.snapshots import CollectReport, Snapshot, SnapshotStore
from hybrid_agent.rollback.task import CommandRunner, Restore, roll_back
from hybrid_agent.store import queries

Sessions = async_sessionmaker[AsyncSession]


async def roll_back_snapshot(sessions: Sessions, store: SnapshotStore, *, snapshot_id: str, reason: str,
                             run: CommandRunner | None, requested_by: str | None = None,
                             lease_held: bool = False) -> Restore:
    """Back to ``snapshot_id``: its files, then its task's compensations registered since,
    newest first. Without ``lease_held``, takes the scope's lease and raises ``ScopeBusy``
    when a task holds it. The restore is journaled whether it worked or not."""
    async with sessions() as session:
        row = await queries.get_snapshot(session, snapshot_id=snapshot_id)
        if row is None:
            raise SnapshotMissing(f"no snapshot {snapshot_id!r}")
        if row.expired_at is not None:
            raise SnapshotMissing(f"snapshot {snapshot_id} expired on {row.expired_at:%Y-%m-%d} (past the retention); "
                                  "its contents may have been collected")
        pending = [] if row.task_id is None else await queries.pending_compensations(
            session, task_id=row.task_id, from_step=row.step or 0)
    snapshot = snapshot_from_row(row)
    compensations = [compensation_from_row(c) for c in pending]

    def restore() -> Restore:
        lease = contextlib.nullcontext() if lease_held else store.lease(
            snapshot.scope, holder=f"a rollback to {snapshot.id} ({reason})")
        with lease:
            return roll_back(store, snapshot, compensations=compensations, run=run, reason=reason,
                             requested_by=requested_by, step=snapshot.step)

    result = await asyncio.to_thread(restore)
    async with sessions.begin() as session:
        await save(session, result)
        await queries.add_journal(session, kind="rollback.restored" if result.ok else "incident.rollback_failed",
                                  task_id=snapshot.task_id, detail={"snapshot": snapshot.id, "reason": reason,
                                                                    "summary": result.describe()})
    return result


async def roll_back_on_demand(sessions: Sessions, store: SnapshotStore, *, snapshot_id: str, requested_by: str | None,
                              run: CommandRunner | None) -> Restore:
    """A person's rollback (CLI, REST, console). A task that had ended and is now undone
    (to any of its snapshots) is marked ``rolled_back``; a queued or parked one keeps its status."""
    restore = await roll_back_snapshot(sessions, store, snapshot_id=snapshot_id, reason="on_demand", run=run,
                                       requested_by=requested_by)
    if restore.ok and restore.task_id is not None:
        async with sessions.begin() as session:
            task = await queries.get_task(session, task_id=restore.task_id)
            if task is not None and task.status in queries.TERMINAL:
                rollback = {"snapshot": snapshot_id, "ok": True, "summary": restore.describe(), "by": requested_by}
                await queries.mark_rolled_back(session, task_id=task.id, result={**(task.result or {}),
                                                                                "rollback": rollback})
    return restore


async def undo_task(sessions: Sessions, store: SnapshotStore, *, task_id: str, reason: str, run: CommandRunner | None,
                    lease_held: bool = False) -> Restore | None:
    """Everything a task changed, undone: back to its first snapshot (None: it changed nothing)."""
    snapshot = await first_snapshot(sessions, task_id=task_id)
    if snapshot is None:
        return None
    return await roll_back_snapshot(sessions, store, snapshot_id=snapshot.id, reason=reason, run=run,
                                    lease_held=lease_held)


async def first_snapshot(sessions: Sessions, *, task_id: str) -> Snapshot | None:
    """The task's workspace before it changed anything."""
    async with sessions() as session:
        rows = await queries.task_snapshots(session, task_id=task_id)
    return snapshot_from_row(rows[0]) if rows else None


async def interrupted_snapshot(sessions: Sessions, *, task_id: str, done_steps: int) -> Snapshot | None:
    """The snapshot of a step that began (it was journaled before the action ran) but was
    never journaled as done: the worker died mid-action."""
    async with sessions() as session:
        rows = await queries.task_snapshots(session, task_id=task_id)
    begun = [row for row in rows if (row.step or 0) > done_steps]
    return snapshot_from_row(begun[0]) if begun else None


async def collect_garbage(sessions: Sessions, store: SnapshotStore, *, retention_days: float,
                          grace_s: float = 600.0) -> tuple[int, CollectReport]:
    """Expire snapshots older than the retention, then remove the contents only they held.
    Returns (snapshots expired now, what was collected)."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=retention_days)
    async with sessions.begin() as session:
        expired = await queries.expire_snapshots(session, before=cutoff)
    async with sessions() as session:
        keep = await queries.live_manifests(session)
    report = await asyncio.to_thread(store.collect_garbage, keep, grace_s=grace_s)
    async with sessions.begin() as session:
        await queries.add_journal(session, kind="rollback.collected", detail={
            "expired": expired, "objects_removed": report.objects_removed, "bytes_freed": report.bytes_freed})
    return expired, report
