"""Events: what the triggers received, and each rule's decision on it (why a task
started, or why none did)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from hybrid_agent.api.auth import Principal, require
from hybrid_agent.api.schemas import ErrorOut, EventOut
from hybrid_agent.store import queries

router = APIRouter(prefix="/api/events", tags=["events"], responses={401: {"model": ErrorOut}})


@router.get("", response_model=list[EventOut])
async def list_events(request: Request, _: Principal = Depends(require("viewer")),
                      source: str | None = Query(default=None, pattern=r"^[a-z][a-z0-9_-]{0,39}$"),
                      limit: int = Query(default=100, ge=1, le=1000)) -> list[EventOut]:
    """Newest first."""
    async with request.app.state.sessions() as session:
        rows = await queries.list_events(session, source=source, limit=limit)
    return [EventOut.model_validate(row) for row in rows]


@router.get("/{event_id}", response_model=EventOut, responses={404: {"model": ErrorOut}})
async def get_event(event_id: str, request: Request, _: Principal = Depends(require("viewer"))) -> EventOut:
    async with request.app.state.sessions() as session:
        row = await queries.get_event(session, event_id=event_id)
    if row is None:
        raise HTTPException(404, f"no event {event_id}")
    return EventOut.model_validate(row)
