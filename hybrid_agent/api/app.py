"""The FastAPI application. Services (store sessions, bus) are opened in the lifespan
from the settings, or handed in by a caller that already has them (``up``, tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.api.auth import TokenCache
from hybrid_agent.api import console
from hybrid_agent.api.routes import approvals, events, health, hooks, metrics, queues, schedules, snapshots, tasks
from hybrid_agent.bus.connection import Bus
from hybrid_agent.config import Settings
from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker
from hybrid_agent.store.journal_writer import JournalWriter


@dataclass
class Services:
    bus: Bus
    sessions: async_sessionmaker[AsyncSession]


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            yield
            await app.state.journal.close()
            return
        if not settings.nats_url:
            raise RuntimeError("the API needs HA_NATS_URL (or run `hybrid-agent up`, which starts NATS)")
        engine = make_engine(settings.database)
        app.state.sessions = make_sessionmaker(engine)
        app.state.journal = JournalWriter(app.state.sessions)
        app.state.bus = await Bus.connect(settings.nats_url, name="hybrid-agent-api",
                                          replicas=settings.stream_replicas)
        try:
            yield
        finally:
            await app.state.journal.close()
            await app.state.bus.close()
            await engine.dispose()

    app = FastAPI(title="hybrid-agent", version="0.1.0", lifespan=lifespan,
                  description="Control plane of the hybrid-agent autonomous operations agent.")
    app.state.settings = settings
    app.state.token_cache = TokenCache()
    if services is not None:
        app.state.bus, app.state.sessions = services.bus, services.sessions
        app.state.journal = JournalWriter(services.sessions)
    app.include_router(health.router)
    app.include_router(tasks.router)
    app.include_router(snapshots.router)
    app.include_router(approvals.router)
    app.include_router(events.router)
    app.include_router(queues.router)
    app.include_router(metrics.router)
    app.include_router(hooks.router)
    app.include_router(schedules.router)
    app.include_router(console.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_exception_handler(console.LoginNeeded, _to_login)
    app.add_exception_handler(RequestValidationError, _journal_validation_error)
    app.add_exception_handler(HTTPException, _journal_http_error)
    return app


async def _to_login(request: Request, exc: Exception) -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


async def _journal_incident(request: Request, status: int, detail: object) -> None:
    # The request body is not kept: it may hold secrets. Path, status and the fault are enough.
    async with request.app.state.sessions.begin() as session:
        await queries.add_journal(session, kind="incident.rejected_request", detail={
            "method": request.method, "path": request.url.path, "status": status, "detail": detail,
            "client": request.client.host if request.client else None})


async def _journal_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
    await _journal_incident(request, 422, fields)
    return await request_validation_exception_handler(request, exc)


async def _journal_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    # Not 404 (scanners) nor 429 (a flood would flood the journal too; the limiter counts them).
    if 400 <= exc.status_code < 500 and exc.status_code not in (404, 429):
        await _journal_incident(request, exc.status_code, exc.detail)
    return await http_exception_handler(request, exc)
