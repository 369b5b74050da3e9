"""POST /hooks/{source} over real HTTP (uvicorn on a free port), on a real NATS and store:
a verified delivery is stored once and published on EVENTS; anything unverified, too big,
too frequent, malformed or replayed is answered without a new event; a resolved alert
cancels what its firing queued; secrets reach neither the journal nor the logs; and a
NATS outage loses nothing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.api.app import Services, create_app
from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.embedded import free_port
from hybrid_agent.bus.messages import Event
from hybrid_agent.config import Settings
from hybrid_agent.store import queries
from hybrid_agent.store.tables import EventRow
from hybrid_agent.triggers.webhooks import sign

PAYLOADS = Path(__file__).parent / "payloads"
GITHUB_SECRET = "gh-webhook-secret-5f0c2a"
GENERIC_SECRET = "generic-webhook-secret-91d7e4"
ALERTMANAGER_TOKEN = "hybrid:am-token-3b8e61"
SECRETS = (GITHUB_SECRET, GENERIC_SECRET, ALERTMANAGER_TOKEN, "am-token-3b8e61")


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "webhook_secret_github": SecretStr(GITHUB_SECRET), "webhook_secret_generic": SecretStr(GENERIC_SECRET),
        "webhook_token_alertmanager": SecretStr(ALERTMANAGER_TOKEN), "webhook_max_body_bytes": 64 * 1024})


@dataclass
class Hooks:
    client: httpx.AsyncClient
    app: FastAPI
    bus: Bus
    sessions: async_sessionmaker[AsyncSession]


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app on uvicorn, in this event loop, as a sender sees it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()   # a failed start raises here
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@contextlib.asynccontextmanager
async def hooks_on(settings: Settings, sessions, bus: Bus) -> AsyncIterator[Hooks]:
    app = create_app(settings, Services(bus=bus, sessions=sessions))
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield Hooks(client, app, bus, sessions)


@pytest.fixture
async def hooks(hook_settings, sessions, embedded_nats) -> AsyncIterator[Hooks]:
    bus = await Bus.connect(embedded_nats)
    async with hooks_on(hook_settings, sessions, bus) as running:
        yield running
    await bus.close()


def github_headers(body: bytes, *, event: str = "workflow_run", delivery: str | None = None,
                   secret: str = GITHUB_SECRET) -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(secret, body), "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd"}


def generic_headers(body: bytes, *, delivery: str | None = None, at: float | None = None,
                    secret: str = GENERIC_SECRET) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {"X-HA-Timestamp": stamp, "X-HA-Signature": sign(secret, f"{stamp}.".encode() + body),
            "X-HA-Delivery": delivery or str(uuid.uuid4()), "Content-Type": "application/json"}


def bearer(token: str = ALERTMANAGER_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def alertmanager_body(*, only: int | None = None, status: str | None = None) -> dict:
    """The fixture notification, or one of its alerts alone, re-statused."""
    body = json.loads((PAYLOADS / "alertmanager_v4.json").read_bytes())
    if only is not None:
        body["alerts"] = [body["alerts"][only]]
    if status is not None:
        body["status"] = status
        for alert in body["alerts"]:
            alert["status"] = status
            alert["endsAt"] = "2025-03-11T09:02:37.512Z" if status == "resolved" else "0001-01-01T00:00:00Z"
    return body


async def event_count(sessions, source: str | None = None) -> int:
    async with sessions() as session:
        return await queries.count_rows(session, table=EventRow,
                                        where=None if source is None else EventRow.source == source)


async def stored(sessions, event_id: str) -> EventRow:
    async with sessions() as session:
        row = await queries.get_event(session, event_id=event_id)
    assert row is not None, f"event {event_id} is not stored"
    return row


async def last_published(bus: Bus, subject: str) -> Event:
    msg = await bus.js.get_last_msg("EVENTS", subject)
    return Event.model_validate_json(msg.data)


# --- github -----------------------------------------------------------------------------

async def test_a_signed_failed_workflow_run_is_stored_and_published_once(hooks):
    raw = (PAYLOADS / "github_workflow_run_failure.json").read_bytes()
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    response = await hooks.client.post("/hooks/github", content=raw, headers=github_headers(raw, delivery=delivery))
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["event_ids"] == [answer["event_id"]]

    row = await stored(hooks.sessions, answer["event_id"])
    assert (row.source, row.kind, row.dedup_key) == ("github", "ci_failure", f"github:{delivery}")
    assert row.payload["repository"] == "octo-org/octo-repo" and row.payload["conclusion"] == "failure"
    assert row.payload["commit"] == "3484a3fb816e0859fd6e1cea078d76385ff50625"
    assert row.payload["github"] == json.loads(raw)
    assert row.published_at is not None
    published = await last_published(hooks.bus, "ha.events.github.ci_failure")
    assert (published.id, published.payload["trigger"]) == (answer["event_id"], "workflow_run")


async def test_a_failed_check_suite_is_a_ci_failure_event(hooks):
    raw = (PAYLOADS / "github_check_suite_failure.json").read_bytes()
    response = await hooks.client.post("/hooks/github", content=raw, headers=github_headers(raw, event="check_suite"))
    assert response.status_code == 202, response.text
    row = await stored(hooks.sessions, response.json()["event_id"])
    assert (row.kind, row.payload["trigger"], row.payload["name"]) == ("ci_failure", "check_suite", "octocoders-linter")


async def test_a_wrong_or_missing_github_signature_is_401_and_nothing_is_stored(hooks):
    raw = (PAYLOADS / "github_workflow_run_failure.json").read_bytes()
    wrong = github_headers(raw, secret="not-the-secret")
    response = await hooks.client.post("/hooks/github", content=raw, headers=wrong)
    assert response.status_code == 401 and "does not match" in response.json()["detail"]
    unsigned = {k: v for k, v in github_headers(raw).items() if k != "X-Hub-Signature-256"}
    response = await hooks.client.post("/hooks/github", content=raw, headers=unsigned)
    assert response.status_code == 401 and "missing X-Hub-Signature-256" in response.json()["detail"]
    tampered = raw.replace(b'"failure"', b'"timed_out"')
    response = await hooks.client.post("/hooks/github", content=tampered, headers=github_headers(raw))
    assert response.status_code == 401
    assert await event_count(hooks.sessions) == 0


async def test_a_ping_pongs_and_other_github_deliveries_are_ignored_without_an_event(hooks):
    ping = (PAYLOADS / "github_ping.json").read_bytes()
    response = await hooks.client.post("/hooks/github", content=ping, headers=github_headers(ping, event="ping"))
    assert (response.status_code, response.json()) == (200, {"pong": True})

    succeeded = json.loads((PAYLOADS / "github_workflow_run_failure.json").read_bytes())
    succeeded["workflow_run"]["conclusion"] = "success"
    raw = json.dumps(succeeded).encode()
    response = await hooks.client.post("/hooks/github", content=raw, headers=github_headers(raw))
    assert response.status_code == 200 and "conclusion 'success' is not a failure" in response.json()["ignored"]
    response = await hooks.client.post("/hooks/github", content=b"{}", headers=github_headers(b"{}", event="push"))
    assert response.status_code == 200 and "event 'push' is not handled" in response.json()["ignored"]
    assert await event_count(hooks.sessions) == 0


async def test_a_github_delivery_without_its_delivery_id_is_400(hooks):
    raw = (PAYLOADS / "github_workflow_run_failure.json").read_bytes()
    headers = {k: v for k, v in github_headers(raw).items() if k != "X-GitHub-Delivery"}
    response = await hooks.client.post("/hooks/github", content=raw, headers=headers)
    assert response.status_code == 400 and "missing X-GitHub-Delivery" in response.json()["detail"]
    assert await event_count(hooks.sessions) == 0


async def test_a_replayed_delivery_is_a_duplicate_and_stays_one_event(hooks):
    raw = (PAYLOADS / "github_workflow_run_failure.json").read_bytes()
    headers = github_headers(raw)
    first = await hooks.client.post("/hooks/github", content=raw, headers=headers)
    again = await hooks.client.post("/hooks/github", content=raw, headers=headers)
    assert first.status_code == 202
    assert (again.status_code, again.json()) == (200, {"duplicate": True, "event_id": first.json()["event_id"]})
    assert await event_count(hooks.sessions) == 1
    assert (await hooks.bus.js.stream_info("EVENTS")).state.messages == 1


# --- refusals common to every source ------------------------------------------------------

async def test_a_source_without_its_secret_is_403_even_when_signed(settings, sessions, embedded_nats):
    bus = await Bus.connect(embedded_nats)
    async with hooks_on(settings, sessions, bus) as hooks:   # the plain settings: no secrets
        raw = (PAYLOADS / "github_workflow_run_failure.json").read_bytes()
        github = await hooks.client.post("/hooks/github", content=raw, headers=github_headers(raw))
        generic = await hooks.client.post("/hooks/generic", content=b"{}", headers=generic_headers(b"{}"))
        alerts = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(), headers=bearer())
    await bus.close()
    assert [r.status_code for r in (github, generic, alerts)] == [403, 403, 403]
    assert "HA_WEBHOOK_SECRET_GITHUB" in github.json()["detail"]
    assert "HA_WEBHOOK_TOKEN_ALERTMANAGER" in alerts.json()["detail"]
    assert await event_count(sessions) == 0


async def test_an_unknown_source_is_404_naming_the_valid_ones(hooks):
    response = await hooks.client.post("/hooks/gitlab", content=b"{}")
    assert response.status_code == 404
    assert all(name in response.json()["detail"] for name in ("github", "alertmanager", "generic"))


async def test_a_body_over_the_limit_is_413_by_its_length_or_as_it_streams(hooks):
    big = json.dumps({"kind": "big", "blob": "x" * (64 * 1024)}).encode()
    response = await hooks.client.post("/hooks/generic", content=big, headers=generic_headers(big))
    assert response.status_code == 413 and "larger than 65536 bytes" in response.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:   # chunked: no Content-Length to go by
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]
    response = await hooks.client.post("/hooks/generic", content=chunks(), headers=generic_headers(big))
    assert response.status_code == 413
    assert await event_count(hooks.sessions) == 0


async def test_malformed_json_is_400_with_the_reason(hooks):
    raw = b'{"kind": "deploy", oops}'
    response = await hooks.client.post("/hooks/generic", content=raw, headers=generic_headers(raw))
    assert response.status_code == 400
    assert "malformed JSON: Expecting property name enclosed in double quotes" in response.json()["detail"]
    response = await hooks.client.post("/hooks/alertmanager", content=b"[1]", headers=bearer())
    assert response.status_code == 400 and "must be a JSON object" in response.json()["detail"]
    assert await event_count(hooks.sessions) == 0


async def test_webhooks_past_the_rate_get_429_with_retry_after(hook_settings, sessions, embedded_nats):
    bus = await Bus.connect(embedded_nats)
    async with hooks_on(hook_settings.model_copy(update={"webhook_rate_per_min": 3}), sessions, bus) as hooks:
        answers = [await hooks.client.post("/hooks/generic", content=b"{}", headers=generic_headers(b"{}"))
                   for _ in range(4)]
        other_source = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(), headers=bearer())
    await bus.close()
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert int(answers[3].headers["Retry-After"]) >= 1 and "more than 3 a minute" in answers[3].json()["detail"]
    assert other_source.status_code == 202         # each source has its own budget
    assert await event_count(sessions, "generic") == 3


# --- generic ------------------------------------------------------------------------------

async def test_a_signed_generic_delivery_is_an_event_of_its_kind(hooks):
    raw = json.dumps({"kind": "deploy_failed", "service": "api", "version": "1.4.2"}).encode()
    response = await hooks.client.post("/hooks/generic", content=raw, headers=generic_headers(raw, delivery="dep-77"))
    assert response.status_code == 202, response.text
    row = await stored(hooks.sessions, response.json()["event_id"])
    assert (row.source, row.kind, row.dedup_key) == ("generic", "deploy_failed", "generic:dep-77")
    assert row.payload == json.loads(raw)
    assert (await last_published(hooks.bus, "ha.events.generic.deploy_failed")).id == row.id


async def test_a_generic_delivery_needs_a_fresh_timestamp_a_delivery_id_and_a_valid_kind(hooks):
    raw = b'{"kind": "deploy_failed"}'
    stale = await hooks.client.post("/hooks/generic", content=raw, headers=generic_headers(raw, at=time.time() - 301))
    future = await hooks.client.post("/hooks/generic", content=raw, headers=generic_headers(raw, at=time.time() + 600))
    assert (stale.status_code, future.status_code) == (401, 401)
    assert "stale" in stale.json()["detail"] and "stale" in future.json()["detail"]

    headers = {k: v for k, v in generic_headers(raw).items() if k != "X-HA-Delivery"}
    response = await hooks.client.post("/hooks/generic", content=raw, headers=headers)
    assert response.status_code == 400 and "missing X-HA-Delivery" in response.json()["detail"]
    bad_kind = b'{"kind": "Deploy Failed"}'
    response = await hooks.client.post("/hooks/generic", content=bad_kind, headers=generic_headers(bad_kind))
    assert response.status_code == 400 and '"kind"' in response.json()["detail"]
    assert await event_count(hooks.sessions) == 0


# --- alertmanager -------------------------------------------------------------------------

async def test_alertmanager_authenticates_by_bearer_token_or_basic_auth(hooks):
    user, _, password = ALERTMANAGER_TOKEN.partition(":")
    by_bearer = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(only=0), headers=bearer())
    by_basic = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(only=1), auth=(user, password))
    assert (by_bearer.status_code, by_basic.status_code) == (202, 202)

    wrong_bearer = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(), headers=bearer("nope"))
    wrong_basic = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(), auth=(user, "nope"))
    anonymous = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body())
    assert [r.status_code for r in (wrong_bearer, wrong_basic, anonymous)] == [401, 401, 401]
    assert await event_count(hooks.sessions) == 2


async def test_alertmanager_makes_one_event_per_alert_and_ignores_unknown_fields(hooks):
    response = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(), headers=bearer())
    assert response.status_code == 202, response.text
    rows = [await stored(hooks.sessions, event_id) for event_id in response.json()["event_ids"]]
    assert [(r.kind, r.payload["status"]) for r in rows] == [("alert_firing", "firing"), ("alert_resolved", "resolved")]
    assert rows[0].dedup_key == "alertmanager:f56f44b05dfccb6c:2025-03-11T08:14:37.512Z:firing"
    assert [r.payload["labels"]["instance"] for r in rows] == ["web-1:9100", "web-2:9100"]
    assert "silenceURL" not in rows[0].payload and "notificationHints" not in rows[0].payload
    assert (await last_published(hooks.bus, "ha.events.alertmanager.alert_resolved")).id == rows[1].id
    # Alertmanager re-sends the whole group every repeat_interval: nothing new then.
    again = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(), headers=bearer())
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert await event_count(hooks.sessions) == 2


async def test_a_resolved_alert_cancels_the_queued_task_of_its_firing_and_journals_the_others(hooks):
    firing = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(only=0), headers=bearer())
    firing_id = firing.json()["event_id"]
    async with hooks.sessions.begin() as session:   # what the router would have made of it
        await queries.insert_events_and_tasks(session, events=[], tasks=[
            {"id": "clean-logs", "event_id": firing_id, "goal": "free space on /var/log", "status": "queued",
             "queue": "default"},
            {"id": "already-running", "event_id": firing_id, "goal": "rotate logs", "status": "running",
             "queue": "default"}])

    resolved = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(only=0, status="resolved"),
                                       headers=bearer())
    assert resolved.status_code == 202, resolved.text
    async with hooks.sessions() as session:
        queued = await queries.get_task(session, task_id="clean-logs")
        running = await queries.get_task(session, task_id="already-running")
        notes = await queries.journal_of_kind(session, kind="alert.resolved")
    assert (queued.status, running.status) == ("cancelled", "running")
    assert running.cancel_requested_at is None
    assert {(n.task_id, n.detail["cancelled"]) for n in notes} == {("clean-logs", True), ("already-running", False)}
    assert all(n.event_id == resolved.json()["event_id"] and n.detail["firing_event_id"] == firing_id for n in notes)


async def test_a_resolution_without_a_known_firing_touches_no_task(hooks):
    response = await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(only=1), headers=bearer())
    assert response.status_code == 202
    async with hooks.sessions() as session:
        assert await queries.journal_of_kind(session, kind="alert.resolved") == []


# --- secrets ------------------------------------------------------------------------------

async def test_secrets_and_signatures_reach_neither_the_journal_nor_the_logs(hooks, caplog):
    caplog.set_level(logging.DEBUG)
    raw = (PAYLOADS / "github_workflow_run_failure.json").read_bytes()
    sent = [github_headers(raw, secret="guessed-secret"), github_headers(raw), generic_headers(b"{}"),
            generic_headers(b"{}", at=time.time() - 3600)]
    statuses = [
        (await hooks.client.post("/hooks/github", content=raw, headers=sent[0])).status_code,
        (await hooks.client.post("/hooks/github", content=raw, headers=sent[1])).status_code,
        (await hooks.client.post("/hooks/generic", content=b"{}", headers=sent[2])).status_code,
        (await hooks.client.post("/hooks/generic", content=b"{}", headers=sent[3])).status_code,
        (await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(), headers=bearer())).status_code,
        (await hooks.client.post("/hooks/alertmanager", json=alertmanager_body(),
                                 headers=bearer(ALERTMANAGER_TOKEN + "x"))).status_code,
        (await hooks.client.post("/hooks/alertmanager", json={},
                                 headers={"Authorization": "Basic " + base64.b64encode(b"hybrid:guess").decode()}
                                 )).status_code,
    ]
    assert statuses == [401, 202, 202, 401, 202, 401, 401]
    async with hooks.sessions() as session:
        journal = [row.detail for kind in ("incident.rejected_request", "event.received", "alert.resolved")
                   for row in await queries.journal_of_kind(session, kind=kind)]
    assert sum(1 for d in journal if d.get("status") == 401) == 4     # the refusals are journaled...
    signatures = [h.get("X-Hub-Signature-256") or h["X-HA-Signature"] for h in sent]
    forbidden = [*SECRETS, "guessed-secret", ALERTMANAGER_TOKEN + "x", "hybrid:guess",
                 *(s.removeprefix("sha256=") for s in signatures)]
    text = json.dumps(journal) + "\n" + caplog.text
    assert not [secret for secret in forbidden if secret in text]     # ...without what would let one in


# --- a NATS outage ------------------------------------------------------------------------

async def test_a_webhook_during_a_nats_outage_is_stored_then_published_exactly_once(hook_settings, sessions,
                                                                                    restartable_nats):
    nats_server, bus = restartable_nats
    async with hooks_on(hook_settings, sessions, bus) as hooks:
        nats_server.stop()
        raw = json.dumps({"kind": "deploy_failed", "service": "api"}).encode()
        response = await hooks.client.post("/hooks/generic", content=raw, headers=generic_headers(raw))
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]
        assert (await stored(sessions, event_id)).published_at is None   # waits in the outbox

        nats_server.start()
        deadline = time.monotonic() + 20
        while not bus.nc.is_connected:
            assert time.monotonic() < deadline, "the bus did not reconnect"
            await asyncio.sleep(0.1)
        # What waited in the outbox goes out once it has settled (outbox.SETTLE_S).
        while (await stored(sessions, event_id)).published_at is None:
            assert time.monotonic() < deadline, "the outbox did not publish the event"
            await hooks.app.state.webhook_outbox.flush()
            await asyncio.sleep(0.1)
        # The client may also have resent its buffered publish on reconnecting: the
        # Nats-Msg-Id (the delivery's dedup key) keeps the stream at one copy.
        assert (await bus.js.stream_info("EVENTS")).state.messages == 1
        assert (await last_published(bus, "ha.events.generic.deploy_failed")).id == event_id