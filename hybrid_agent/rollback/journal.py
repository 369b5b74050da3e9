"""Rollback's records in the SQL journal (through the store's queries), and back."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy.ext.asyncio import AsyncSession

from hybrid_agent.rollback.compensations import Compensation
from hybrid_agent.rollback.snapshots import Snapshot
from hybrid_agent.rollback.task import Restore, RollbackRecord
from hybrid_agent.store import queries
from hybrid_agent.store.tables import CompensationRow, SnapshotRow


async def save(session: AsyncSession, record: RollbackRecord) -> None:
    match record:
        case Snapshot():
            await queries.add_snapshot(session, snapshot=asdict(record))
        case Compensation():
            row = asdict(record)
            row.pop("id")
            await queries.add_compensation(session, compensation=row)
        case Restore():
            await queries.add_restore(session, restore=asdict(record))
            for ran in (record.report or {}).get("compensations", []):
                await queries.mark_compensation_ran(session, task_id=ran["task_id"], step=ran["step"],
                                                    command=ran["command"], ok=ran["ok"], output=ran["output"])


def snapshot_from_row(row: SnapshotRow) -> Snapshot:
    return Snapshot(row.id, row.scope, row.manifest, row.entries, row.files_read, row.bytes_stored, row.duration_s,
                    row.task_id, row.step, row.created_at)


def compensation_from_row(row: CompensationRow) -> Compensation:
    return Compensation(row.command, row.undoes, row.task_id, row.step, row.snapshot_id, row.id, row.registered_at)
