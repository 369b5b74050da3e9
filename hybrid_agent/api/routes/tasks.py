"""Tasks: submit, list, read one with its steps and journal, follow it live, cancel."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from hybrid_agent.agents.assembly import sandboxed_commands
from hybrid_agent.agents.workspace import WorkspaceNotAllowed, check_workspace
from hybrid_agent.api import live
from hybrid_agent.api.auth import Principal, require
from hybrid_agent.api.schemas import (
    ErrorOut,
    JournalOut,
    StepOut,
    TaskCancelled,
    TaskCreate,
    TaskCreated,
    TaskOut,
    TaskSummary,
)
from hybrid_agent.rollback.errors import RollbackError
from hybrid_agent.rollback.operations import undo_task
from hybrid_agent.rollback.snapshots import SnapshotStore
from hybrid_agent.store import queries
from hybrid_agent.triggers import user

router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses={401: {"model": ErrorOut}})
STATUSES = ("queued", "running", "awaiting_approval", "succeeded", "failed", "cancelled", "rolled_back")


@router.post("", status_code=201, response_model=TaskCreated, responses={422: {"model": ErrorOut}})
async def submit_task(body: TaskCreate, request: Request, principal: Principal = Depends(require("operator")),
                      idempotency_key: str | None = Header(default=None, max_length=200)) -> TaskCreated:
    settings = request.app.state.settings
    if body.workspace is not None:
        try:
            check_workspace(body.workspace, roots=settings.allowed_roots)
        except WorkspaceNotAllowed as exc:
            raise HTTPException(422, [{"loc": ["body", "workspace"], "msg": str(exc), "type": "value_error"}]) from exc
    state = request.app.state
    submission = await user.submit(state.bus, state.sessions, state.journal, goal=body.goal,
                                   workspace=body.workspace, requested_by=principal.name,
                                   idempotency_key=idempotency_key, check=body.check, dry_run=body.dry_run,
                                   queue=body.queue, priority=body.priority)
    return TaskCreated(id=submission.task_id, status="queued")


@router.get("", response_model=list[TaskSummary])
async def list_tasks(request: Request, _: Principal = Depends(require("viewer")),
                     status: str | None = Query(default=None, pattern="^(" + "|".join(STATUSES) + ")$"),
                     limit: int = Query(default=100, ge=1, le=1000)) -> list[TaskSummary]:
    async with request.app.state.sessions() as session:
        rows = await queries.list_tasks(session, status=status, limit=limit)
    return [TaskSummary.model_validate(row) for row in rows]


@router.get("/{task_id}", response_model=TaskOut, responses={404: {"model": ErrorOut}})
async def get_task(task_id: str, request: Request, _: Principal = Depends(require("viewer"))) -> TaskOut:
    async with request.app.state.sessions() as session:
        task = await queries.get_task(session, task_id=task_id)
        if task is None:
            raise HTTPException(404, f"no task {task_id}")
        steps = await queries.get_steps(session, task_id=task_id)
        journal = await queries.journal_for_task(session, task_id=task_id, event_id=task.event_id)
    return TaskOut(**TaskSummary.model_validate(task).model_dump(),
                   steps=[StepOut.model_validate(s) for s in steps],
                   journal=[JournalOut.model_validate(j) for j in journal])


@router.get("/{task_id}/events", responses={200: {"content": {"text/event-stream": {}},
                                                      "description": "`step` and `status` events until the task ends"},
                                                404: {"model": ErrorOut}})
async def task_events(task_id: str, request: Request, _: Principal = Depends(require("viewer"))) -> StreamingResponse:
    """The task's trace, live (server-sent events): its steps so far, then each new step
    and status change, until it ends."""
    async with request.app.state.sessions() as session:
        if await queries.get_task(session, task_id=task_id) is None:
            raise HTTPException(404, f"no task {task_id}")
    return StreamingResponse(live.task_events(request, task_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/{task_id}/cancel", status_code=202, response_model=TaskCancelled,
             responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
async def cancel_task(task_id: str, request: Request, principal: Principal = Depends(require("operator"))) -> TaskCancelled:
    """A queued or parked task ends ``cancelled`` now, its changes undone; a running one is
    stopped by its worker before its next step, which then undoes them."""
    state = request.app.state
    async with state.sessions.begin() as session:
        was = await queries.cancel_task(session, task_id=task_id)
        if was is not None:
            await queries.add_journal(session, kind="task.cancel_requested", task_id=task_id,
                                      detail={"by": principal.name, "status": was})
    if was is None:
        raise HTTPException(404, f"no task {task_id}")
    if was in queries.TERMINAL:
        raise HTTPException(409, f"task {task_id} has already ended ({was})")
    if was == "running":
        await state.bus.publish_cancel(task_id)
        return TaskCancelled(id=task_id, status="running")
    return TaskCancelled(id=task_id, status="cancelled", rollback=await _undo_cancelled(request, task_id))


async def _undo_cancelled(request: Request, task_id: str) -> dict | None:
    settings, sessions = request.app.state.settings, request.app.state.sessions
    async with sessions() as session:
        task = await queries.get_task(session, task_id=task_id)
    if not settings.rollback_failed_tasks or task is None or not task.workspace:
        return None
    try:
        restore = await undo_task(sessions, SnapshotStore(settings.rollback_dir), task_id=task_id,
                                  reason="task_cancelled", run=sandboxed_commands(settings, Path(task.workspace)))
    except RollbackError as exc:   # the task stays cancelled; the failure is journaled and shown
        return {"ok": False, "summary": str(exc)}
    if restore is None:
        return None
    rollback = {"snapshot": restore.snapshot_id, "ok": restore.ok, "summary": restore.describe()}
    async with sessions.begin() as session:
        await queries.set_task_result(session, task_id=task_id, result={**(task.result or {}), "rollback": rollback})
    return rollback
