"""Tasks: submit, list, read one with its steps and journal."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request

from hybrid_agent.agents.workspace import WorkspaceNotAllowed, check_workspace
from hybrid_agent.api.auth import Principal, require
from hybrid_agent.api.schemas import ErrorOut, JournalOut, StepOut, TaskCreate, TaskCreated, TaskOut, TaskSummary
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
                                   idempotency_key=idempotency_key)
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
