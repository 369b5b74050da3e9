"""Schedules: list them with their next run, and create, replace or delete those made over
the API. Schedules of the rules file are changed in the rules file (409 here). The cron
trigger reads the table every few seconds, in whichever process runs it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from sqlalchemy.exc import IntegrityError

from hybrid_agent.api.auth import Principal, require
from hybrid_agent.api.schemas import ErrorOut, ScheduleIn, ScheduleOut
from hybrid_agent.store import queries
from hybrid_agent.store.tables import ScheduleRow
from hybrid_agent.triggers.cron import next_run, parse_cron
from hybrid_agent.triggers.rules import NAME

router = APIRouter(prefix="/api/schedules", tags=["schedules"], responses={401: {"model": ErrorOut}})


@router.get("", response_model=list[ScheduleOut])
async def list_schedules(request: Request, _: Principal = Depends(require("viewer"))) -> list[ScheduleOut]:
    async with request.app.state.sessions() as session:
        rows = await queries.list_schedules(session)
    return [schedule_out(row) for row in rows]


@router.post("", response_model=ScheduleOut, status_code=201,
             responses={403: {"model": ErrorOut}, 409: {"model": ErrorOut}})
async def put_schedule(body: ScheduleIn, request: Request,
                       principal: Principal = Depends(require("operator"))) -> ScheduleOut:
    """Create the schedule, or replace the one of that name made over the API."""
    try:
        async with request.app.state.sessions.begin() as session:
            refuse_rules_file(await queries.get_schedule(session, name=body.name))
            await queries.upsert_schedule(session, schedule={**body.model_dump(), "origin": "api",
                                                             "created_by": principal.name})
    except IntegrityError as exc:   # PostgreSQL: another request created it at the same moment
        raise HTTPException(409, f"schedule {body.name} was created by another request meanwhile") from exc
    async with request.app.state.sessions() as session:
        row = await queries.get_schedule(session, name=body.name)
    if row is None:   # deleted by another request in between
        raise HTTPException(409, f"schedule {body.name} was deleted meanwhile")
    return schedule_out(row)


@router.delete("/{name}", status_code=204, response_class=Response,
               responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
async def delete_schedule(request: Request, name: str = Path(pattern=NAME), _: Principal = Depends(require("operator"))) -> Response:
    async with request.app.state.sessions.begin() as session:
        refuse_rules_file(await queries.get_schedule(session, name=name))
        if not await queries.delete_schedule(session, name=name):
            raise HTTPException(404, f"no schedule {name}")
    return Response(status_code=204)


def refuse_rules_file(row: ScheduleRow | None) -> None:
    if row is not None and row.origin == "rules":
        raise HTTPException(409, f"schedule {row.name} is defined in the rules file; change it there")


def schedule_out(row: ScheduleRow) -> ScheduleOut:
    out = ScheduleOut.model_validate(row)
    if row.enabled:
        try:
            out.next_run_at = next_run(parse_cron(row.cron, row.timezone))
        except ValueError:   # a row written around the API; the cron trigger skips it too
            pass
    return out
