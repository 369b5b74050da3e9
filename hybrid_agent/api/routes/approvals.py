"""Approvals: the queue of held calls, one approval, and a person's decision on it."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from hybrid_agent.agents.approvals import send_back
from hybrid_agent.api.auth import Principal, require
from hybrid_agent.api.schemas import ApprovalOut, DecisionIn, ErrorOut
from hybrid_agent.store import queries

router = APIRouter(prefix="/api/approvals", tags=["approvals"], responses={401: {"model": ErrorOut}})
STATUSES = ("pending", "approved", "rejected", "expired")


@router.get("", response_model=list[ApprovalOut])
async def list_approvals(request: Request, _: Principal = Depends(require("viewer")),
                         status: str | None = Query(default=None, pattern="^(" + "|".join(STATUSES) + ")$"),
                         limit: int = Query(default=100, ge=1, le=1000)) -> list[ApprovalOut]:
    async with request.app.state.sessions() as session:
        rows = await queries.list_approvals(session, status=status, limit=limit)
    return [ApprovalOut.model_validate(row) for row in rows]


@router.get("/{approval_id}", response_model=ApprovalOut, responses={404: {"model": ErrorOut}})
async def get_approval(approval_id: str, request: Request, _: Principal = Depends(require("viewer"))) -> ApprovalOut:
    async with request.app.state.sessions() as session:
        row = await queries.get_approval(session, approval_id=approval_id)
    if row is None:
        raise HTTPException(404, f"no approval {approval_id}")
    return ApprovalOut.model_validate(row)


@router.post("/{approval_id}/decision", response_model=ApprovalOut,
             responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
async def decide(approval_id: str, body: DecisionIn, request: Request,
                 principal: Principal = Depends(require("approver"))) -> ApprovalOut:
    """Approve or reject a held call; the first decision stands (409 after it, or after
    expiry). Who requested the task may not approve its actions. The task then resumes:
    with the call (approve), or without it and told why (reject)."""
    state = request.app.state
    async with state.sessions.begin() as session:
        row = await queries.get_approval(session, approval_id=approval_id)
        if row is None:
            raise HTTPException(404, f"no approval {approval_id}")
        if body.decision == "approve" and row.requested_by == principal.name:
            raise HTTPException(403, f"{principal.name} requested this task and may not approve its actions")
        status = "approved" if body.decision == "approve" else "rejected"
        if not await queries.decide_approval(session, approval_id=approval_id, status=status, by=principal.name,
                                             reason=body.reason or None, now=datetime.now(timezone.utc)):
            await session.refresh(row)
            raise HTTPException(409, f"approval {approval_id} is already {_settled(row.status)}")
        await queries.add_journal(session, kind="approval.decided", task_id=row.task_id, detail={
            "approval": approval_id, "decision": status, "by": principal.name, "reason": body.reason})
    async with state.sessions() as session:
        row = await queries.get_approval(session, approval_id=approval_id)
    assert row is not None
    await send_back(state.bus, state.sessions, row)
    return ApprovalOut.model_validate(row)


def _settled(status: str) -> str:
    return "expired (past its time, which counts as a rejection)" if status == "pending" else status
