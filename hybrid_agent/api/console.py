"""The web console: server-rendered pages (Jinja2) over the same store, with a little JS
for live updates (SSE) and no build step or external network. Login puts the token in an
HttpOnly, SameSite=Strict cookie; every action goes through the API's own handlers, with
the role each needs checked here first."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from hybrid_agent.api.auth import COOKIE, Principal, authenticate, check_role, check_same_origin
from hybrid_agent.api.routes import approvals, queues, snapshots, tasks
from hybrid_agent.api.schemas import DecisionIn, TaskCreate
from hybrid_agent.store import queries

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


class LoginNeeded(Exception):
    """No valid console cookie: the person is sent to the login page."""


async def principal_of(request: Request) -> Principal:
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginNeeded
    try:
        return await authenticate(request, token)
    except HTTPException as exc:
        raise LoginNeeded from exc


def page(request: Request, name: str, principal: Principal | None, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"me": principal, "now": datetime.now(timezone.utc),
                                                      "error": request.query_params.get("error"), **context})


def back(path: str, error: str | None = None) -> RedirectResponse:
    return RedirectResponse(path + (f"?error={quote(error)}" if error else ""), status_code=303)


@router.get("/login")
async def login_page(request: Request) -> HTMLResponse:
    return page(request, "login.html", None)


@router.post("/login")
async def login(request: Request, token: str = Form(...)) -> Response:
    try:
        await authenticate(request, token.strip())
    except HTTPException:
        return back("/login", "that token is not valid (or was revoked)")
    response = back("/")
    response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout() -> Response:
    response = back("/login")
    response.delete_cookie(COOKIE)
    return response


@router.get("/")
async def task_list(request: Request, status: str | None = None) -> HTMLResponse:
    me = await principal_of(request)
    async with request.app.state.sessions() as session:
        rows = await queries.list_tasks(session, status=status if status in tasks.STATUSES else None, limit=200)
        pending = len(await queries.list_approvals(session, status="pending"))
    name = "task_rows.html" if request.query_params.get("partial") else "tasks.html"
    return page(request, name, me, tasks=rows, status=status, statuses=tasks.STATUSES, pending_count=pending)


@router.get("/tasks/{task_id}")
async def task_page(request: Request, task_id: str) -> HTMLResponse:
    me = await principal_of(request)
    async with request.app.state.sessions() as session:
        task = await queries.get_task(session, task_id=task_id)
        if task is None:
            raise HTTPException(404, f"no task {task_id}")
        steps = await queries.get_steps(session, task_id=task_id)
        snaps = await queries.task_snapshots(session, task_id=task_id)
    return page(request, "task.html", me, task=task, steps=steps, snapshots=snaps, ended=task.status in queries.TERMINAL)


@router.get("/approvals")
async def approval_queue(request: Request) -> HTMLResponse:
    me = await principal_of(request)
    async with request.app.state.sessions() as session:
        pending = await queries.list_approvals(session, status="pending")
        recent = [a for a in await queries.list_approvals(session, limit=20) if a.status != "pending"]
    return page(request, "approvals.html", me, pending=pending, recent=recent)


@router.get("/queues")
async def queue_page(request: Request) -> HTMLResponse:
    me = await principal_of(request)
    return page(request, "queues.html", me, lanes=await queues.list_lanes(request, me))


@router.get("/submit")
async def submit_page(request: Request) -> HTMLResponse:
    return page(request, "submit.html", await principal_of(request))


@router.post("/submit")
async def submit(request: Request, goal: str = Form(...), workspace: str = Form(""), check: str = Form(""),
                 dry_run: str = Form(""), priority: int = Form(0)) -> Response:
    try:
        me = await acting(request, "operator")
        body = TaskCreate(goal=goal, workspace=workspace or None, check=check or None, dry_run=dry_run == "on",
                          priority=priority)
        created = await tasks.submit_task(body, request, me, idempotency_key=None)
    except (HTTPException, ValueError) as exc:
        return back("/submit", _reason(exc))
    return back(f"/tasks/{created.id}")


@router.post("/approvals/{approval_id}/decision")
async def decide(request: Request, approval_id: str, decision: str = Form(...), reason: str = Form("")) -> Response:
    try:
        me = await acting(request, "approver")
        await approvals.decide(approval_id, DecisionIn(decision=decision, reason=reason), request, me)
    except (HTTPException, ValueError) as exc:
        return back("/approvals", _reason(exc))
    return back("/approvals")


@router.post("/tasks/{task_id}/cancel")
async def cancel(request: Request, task_id: str) -> Response:
    try:
        me = await acting(request, "operator")
        await tasks.cancel_task(task_id, request, me)
    except HTTPException as exc:
        return back(f"/tasks/{task_id}", _reason(exc))
    return back(f"/tasks/{task_id}")


@router.post("/snapshots/{snapshot_id}/rollback")
async def rollback(request: Request, snapshot_id: str, task_id: str = Form(...)) -> Response:
    try:
        me = await acting(request, "operator")
        await snapshots.rollback(snapshot_id, request, me)
    except HTTPException as exc:
        return back(f"/tasks/{task_id}", _reason(exc))
    return back(f"/tasks/{task_id}")


async def acting(request: Request, role: str) -> Principal:
    """The logged-in person, allowed to do this, asking from a console page."""
    me = await principal_of(request)
    check_same_origin(request)
    check_role(me, role)
    return me


def _reason(exc: Exception) -> str:
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    if isinstance(detail, list):   # validation errors: the first field's message
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail)
    return str(detail)[:300]
