"""Webhook triggers: ``POST /hooks/{source}`` for GitHub, Alertmanager and signed generic
JSON. No bearer token: a delivery authenticates by its signature (or, Alertmanager, its
credentials). Checks run cheapest first: source, configured, rate, size, signature, body."""

from __future__ import annotations

import logging
import math
import time

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import ClientDisconnect

from hybrid_agent.api.schemas import ErrorOut, HookAccepted, HookAnswered
from hybrid_agent.bus.messages import Event
from hybrid_agent.config import Settings
from hybrid_agent.store import queries
from hybrid_agent.triggers import webhooks
from hybrid_agent.triggers.outbox import Outbox

log = logging.getLogger(__name__)
router = APIRouter(prefix="/hooks", tags=["hooks"])

_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "the sender's JSON payload, signed as received"}}}}}
_ERRORS = {status: {"model": ErrorOut} for status in (400, 401, 403, 404, 413, 429)}


@router.post("/{source}", status_code=202, response_model=HookAccepted, openapi_extra=_BODY,
             summary="Receive a webhook delivery", responses={200: {"model": HookAnswered}, **_ERRORS})
async def receive_hook(source: str, request: Request) -> JSONResponse:
    """A delivery from ``github`` (``X-Hub-Signature-256``, ``X-GitHub-Event``,
    ``X-GitHub-Delivery``), ``alertmanager`` (``Authorization: Bearer`` or basic auth) or
    ``generic`` (``X-HA-Timestamp``, ``X-HA-Signature: sha256=HMAC(<timestamp>.<body>)``,
    ``X-HA-Delivery``). 202: stored as events; 200: nothing new (ping, ignored, replay)."""
    if source not in webhooks.SOURCES:
        raise HTTPException(404, f"no webhook source {source[:40]!r}; the sources are {', '.join(webhooks.SOURCES)}")
    settings: Settings = request.app.state.settings
    secret = _secret(settings, source)
    _take_rate(request.app, source, settings.webhook_rate_per_min)
    body = await _read_body(request, settings.webhook_max_body_bytes)
    try:
        parsed = webhooks.receive(source, secret=secret, body=body, headers=request.headers, now=time.time(),
                                  max_age_s=settings.webhook_max_age_s)
    except webhooks.WebhookError as exc:
        raise HTTPException(exc.status, exc.detail) from None
    if not parsed.events:
        return JSONResponse(parsed.answer, status_code=200)
    return await _emit(request.app, parsed.events)


def _secret(settings: Settings, source: str) -> str:
    configured: SecretStr | None = {"github": settings.webhook_secret_github,
                                    "generic": settings.webhook_secret_generic,
                                    "alertmanager": settings.webhook_token_alertmanager}[source]
    if configured is None or not configured.get_secret_value():
        setting = "HA_WEBHOOK_TOKEN_ALERTMANAGER" if source == "alertmanager" else f"HA_WEBHOOK_SECRET_{source.upper()}"
        raise HTTPException(403, f"webhook source {source} is not configured (set {setting})")
    return configured.get_secret_value()


def _take_rate(app: FastAPI, source: str, per_min: int) -> None:
    limits = getattr(app.state, "webhook_rate_limits", None)
    if limits is None:
        limits = app.state.webhook_rate_limits = webhooks.RateLimits(per_min)
    wait_s = limits.take(source, time.monotonic())
    if wait_s > 0:
        raise HTTPException(429, f"too many {source} webhooks: more than {per_min} a minute",
                            headers={"Retry-After": str(max(1, math.ceil(wait_s)))})


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused past ``limit`` bytes: by Content-Length when sent, and by
    counting what arrives (a chunked body has no length)."""
    too_large = HTTPException(413, f"the body is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise HTTPException(400, "Content-Length must be a number of bytes")
        if int(declared) > limit:
            raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise HTTPException(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def _outbox(app: FastAPI) -> Outbox:
    outbox = getattr(app.state, "webhook_outbox", None)
    if outbox is None:
        outbox = app.state.webhook_outbox = Outbox(app.state.bus, app.state.sessions)
    return outbox


async def _emit(app: FastAPI, events: list[Event]) -> JSONResponse:
    outbox = _outbox(app)
    emitted = [await outbox.emit(event) for event in events]
    new = [(event, result) for event, result in zip(events, emitted) if not result.duplicate]
    for event, _ in new:
        if event.kind == "alert_resolved":
            await _resolve_alert(app.state.sessions, event)
    if not new:
        return JSONResponse({"duplicate": True, "event_id": emitted[0].event_id}, status_code=200)
    log.info("webhook %s: %d events stored (%d published)", events[0].source, len(new),
             sum(result.published for _, result in new))
    ids = [result.event_id for _, result in new]
    return JSONResponse({"event_ids": ids, "event_id": ids[0]}, status_code=202)


async def _resolve_alert(sessions: async_sessionmaker[AsyncSession], resolved: Event) -> None:
    """A resolved alert journals ``alert.resolved`` on the tasks its firing made, and
    cancels those still queued: the trouble they were to fix is gone."""
    payload = resolved.payload
    firing_key = webhooks.alert_dedup_key(payload["fingerprint"], payload["startsAt"], "firing")
    async with sessions.begin() as session:
        firing_id = await queries.event_id_for_dedup_key(session, dedup_key=firing_key)
        if firing_id is None:
            return
        for task in await queries.tasks_of_event(session, event_id=firing_id):
            cancelled = task.status == "queued" and await queries.cancel_task(session, task_id=task.id) == "queued"
            await queries.add_journal(session, kind="alert.resolved", task_id=task.id, event_id=resolved.id, detail={
                "alertname": payload["alertname"], "fingerprint": payload["fingerprint"],
                "endsAt": payload["endsAt"], "firing_event_id": firing_id, "cancelled": cancelled})

