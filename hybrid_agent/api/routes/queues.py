"""Queues: what waits in each lane (queue and priority band) of TASKS, what workers hold,
and which lanes no worker has served, read from JetStream."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request

from hybrid_agent.api.auth import Principal, require
from hybrid_agent.api.schemas import ErrorOut, LaneOut
from hybrid_agent.bus.task_feed import lane_states

router = APIRouter(prefix="/api/queues", tags=["queues"], responses={401: {"model": ErrorOut}})


@router.get("", response_model=list[LaneOut], responses={503: {"model": ErrorOut}})
async def list_lanes(request: Request, _: Principal = Depends(require("viewer"))) -> list[LaneOut]:
    """Most urgent first; a lane no worker serves (``served`` false) keeps its tasks until one does."""
    try:
        lanes = await lane_states(request.app.state.bus.js)
    except Exception as exc:   # nats raises several unrelated types when it cannot answer
        raise HTTPException(503, f"the bus did not answer: {exc}") from exc
    return [LaneOut.model_validate(lane, from_attributes=True) for lane in lanes]
