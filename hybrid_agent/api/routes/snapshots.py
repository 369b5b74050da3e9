"""Snapshots: list them, read one with its restores, and roll back to one."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from hybrid_agent.agents.assembly import sandboxed_commands
from hybrid_agent.api.auth import Principal, require
from hybrid_agent.api.schemas import ErrorOut, RestoreOut, SnapshotOut
from hybrid_agent.rollback.errors import ScopeBusy, SnapshotMissing
from hybrid_agent.rollback.operations import roll_back_on_demand
from hybrid_agent.rollback.snapshots import SnapshotStore
from hybrid_agent.store import queries

router = APIRouter(prefix="/api/snapshots", tags=["snapshots"], responses={401: {"model": ErrorOut}})


@router.get("", response_model=list[SnapshotOut])
async def list_snapshots(request: Request, _: Principal = Depends(require("viewer")),
                         task_id: str | None = Query(default=None, max_length=40),
                         limit: int = Query(default=100, ge=1, le=1000)) -> list[SnapshotOut]:
    async with request.app.state.sessions() as session:
        rows = await queries.list_snapshots(session, task_id=task_id, limit=limit)
    return [SnapshotOut.model_validate(row) for row in rows]


@router.get("/{snapshot_id}/restores", response_model=list[RestoreOut], responses={404: {"model": ErrorOut}})
async def snapshot_restores(snapshot_id: str, request: Request,
                            _: Principal = Depends(require("viewer"))) -> list[RestoreOut]:
    async with request.app.state.sessions() as session:
        if await queries.get_snapshot(session, snapshot_id=snapshot_id) is None:
            raise HTTPException(404, f"no snapshot {snapshot_id}")
        rows = await queries.list_restores(session, snapshot_id=snapshot_id)
    return [RestoreOut.model_validate(row) for row in rows]


@router.post("/{snapshot_id}/rollback", response_model=RestoreOut,
             responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 410: {"model": ErrorOut}})
async def rollback(snapshot_id: str, request: Request, principal: Principal = Depends(require("operator"))) -> RestoreOut:
    """Bring the snapshot's scope back to it (and run its task's compensations since).
    409 while a task works in that scope; 410 when its contents are past retention."""
    settings = request.app.state.settings
    async with request.app.state.sessions() as session:
        row = await queries.get_snapshot(session, snapshot_id=snapshot_id)
    if row is None:
        raise HTTPException(404, f"no snapshot {snapshot_id}")
    try:
        restore = await roll_back_on_demand(
            request.app.state.sessions, SnapshotStore(settings.rollback_dir), snapshot_id=snapshot_id,
            requested_by=principal.name, run=sandboxed_commands(settings, Path(row.scope)))
    except ScopeBusy as exc:
        raise HTTPException(409, str(exc)) from exc
    except SnapshotMissing as exc:
        raise HTTPException(410, str(exc)) from exc
    if not restore.ok:
        raise HTTPException(500, f"the rollback failed and was journaled: {restore.error}")
    return RestoreOut.model_validate(restore, from_attributes=True)
