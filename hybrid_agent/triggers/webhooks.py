"""Webhook triggers: verifying a delivery (HMAC signatures over the raw body, Alertmanager's
bearer or basic credentials) and turning its body into Events. Pure functions over bytes,
strings and dicts, no HTTP framework: ``api/routes/hooks.py`` reads the request, maps a
``WebhookError`` to its status and emits the events through the outbox.

Every message here may end up in the journal (4xx details are journaled), so none holds a
secret, a signature or credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hybrid_agent.bus.messages import Event

SOURCES = ("github", "alertmanager", "generic")

# Delivery ids become dedup keys (a unique text column, at most 200 characters): printable
# ASCII only, so no NUL or control character reaches the store.
_DELIVERY = re.compile(r"[\x21-\x7e]{1,128}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# What GitHub Actions calls a failed run; a check suite has no startup_failure.
FAILED_RUN = frozenset({"failure", "timed_out", "startup_failure"})
FAILED_SUITE = frozenset({"failure", "timed_out"})


class WebhookError(Exception):
    """A refused delivery: ``status`` is the HTTP status, ``detail`` says why (no secrets)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Parsed:
    """What a delivery amounts to: events to emit, or (none) the 200 answer that says why not."""

    events: list[Event]
    answer: dict[str, Any] = field(default_factory=dict)


def receive(source: str, *, secret: str, body: bytes, headers: Mapping[str, str], now: float,
            max_age_s: float) -> Parsed:
    """Verify then parse one delivery to ``source``. ``headers`` is looked up by lowercase
    name (Starlette's headers are case-insensitive). Raises WebhookError: 401 for
    credentials, 400 for the body or a missing header."""
    if source == "github":
        verify_github(secret, body, headers.get("x-hub-signature-256"))
        return github_events(headers.get("x-github-event"), headers.get("x-github-delivery"), parse_json_object(body))
    if source == "alertmanager":
        verify_alertmanager(secret, headers.get("authorization"))
        return alertmanager_events(parse_json_object(body))
    if source == "generic":
        verify_generic(secret, body, timestamp=headers.get("x-ha-timestamp"), signature=headers.get("x-ha-signature"),
                       now=now, max_age_s=max_age_s)
        return generic_events(headers.get("x-ha-delivery"), parse_json_object(body))
    raise WebhookError(404, f"no webhook source {source[:40]!r}; the sources are {', '.join(SOURCES)}")


# --- verification ---------------------------------------------------------------------

def sign(secret: str, message: bytes) -> str:
    """``sha256=<hex HMAC-SHA256>``, the form both signed sources send."""
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_github(secret: str, body: bytes, signature: str | None) -> None:
    """GitHub signs the raw body: ``X-Hub-Signature-256: sha256=<hex>``."""
    _check_signature(sign(secret, body), signature, "X-Hub-Signature-256")


def verify_generic(secret: str, body: bytes, *, timestamp: str | None, signature: str | None, now: float,
                   max_age_s: float) -> None:
    """The generic source signs ``<timestamp>.<raw body>``, so a captured delivery cannot be
    replayed once its timestamp is stale (and within the window its delivery id dedups it)."""
    if not timestamp:
        raise WebhookError(401, "missing X-HA-Timestamp header")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookError(401, "X-HA-Timestamp must be unix seconds (digits only)")
    skew = abs(now - int(timestamp))
    if skew > max_age_s:
        raise WebhookError(401, f"X-HA-Timestamp is stale: {skew:.0f} s from the server's clock, "
                                f"more than the {max_age_s:g} s allowed")
    _check_signature(sign(secret, timestamp.encode() + b"." + body), signature, "X-HA-Signature")


def verify_alertmanager(token: str, authorization: str | None) -> None:
    """Alertmanager cannot sign bodies; its http_config sends ``Authorization: Bearer
    <token>`` or basic auth, whose ``user:password`` must equal the configured token."""
    if not authorization:
        raise WebhookError(401, "missing Authorization header (Bearer token or basic auth)")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        presented = credentials.strip().encode("utf-8", "surrogatepass")
    elif scheme.lower() == "basic":
        try:
            presented = base64.b64decode(credentials.strip(), validate=True)
        except ValueError:   # binascii.Error, or a non-ASCII string
            raise WebhookError(401, "malformed basic credentials (not base64)") from None
    else:
        raise WebhookError(401, "the Authorization scheme must be Bearer or Basic")
    if not hmac.compare_digest(token.encode(), presented):
        raise WebhookError(401, "the Authorization credentials are wrong")


def _check_signature(expected: str, received: str | None, header: str) -> None:
    if not received:
        raise WebhookError(401, f"missing {header} header")
    if not received.startswith("sha256="):
        raise WebhookError(401, f"{header} must be sha256=<hex HMAC-SHA256>")
    # Bytes, not str: compare_digest refuses non-ASCII str, and a header may hold any byte.
    if not hmac.compare_digest(expected.encode(), received.strip().lower().encode("utf-8", "surrogatepass")):
        raise WebhookError(401, f"{header} does not match the body")


# --- parsing --------------------------------------------------------------------------

def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise WebhookError(400, "malformed JSON: nested too deeply") from None
    except ValueError as exc:   # JSONDecodeError, UnicodeDecodeError, NaN, a huge integer
        raise WebhookError(400, f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise WebhookError(400, f"the body must be a JSON object, not {type(value).__name__}")
    return value


def _refuse_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; no JSON column nor other parser does.
    raise ValueError(f"{name} is not valid JSON")


def _delivery(value: str | None, header: str) -> str:
    if not value:
        raise WebhookError(400, f"missing {header} header (the delivery id, used to drop replays)")
    if not _DELIVERY.fullmatch(value):
        raise WebhookError(400, f"{header} must be 1 to 128 printable ASCII characters")
    return value


def _ignored(why: str) -> Parsed:
    return Parsed(events=[], answer={"ignored": why})


# --- github ---------------------------------------------------------------------------

def github_events(event_name: str | None, delivery: str | None, body: dict[str, Any]) -> Parsed:
    """A failed ``workflow_run`` or ``check_suite`` is one ``ci_failure`` event; a ping is
    answered; anything else is ignored (GitHub sends whatever the hook subscribes to)."""
    if not event_name:
        raise WebhookError(400, "missing X-GitHub-Event header")
    key = f"github:{_delivery(delivery, 'X-GitHub-Delivery')}"
    if event_name == "ping":
        return Parsed(events=[], answer={"pong": True})
    if event_name not in ("workflow_run", "check_suite"):
        return _ignored(f"event {event_name[:60]!r} is not handled (only workflow_run and check_suite)")
    action = body.get("action")
    if action != "completed":
        return _ignored(f"{event_name} action {str(action)[:60]!r} is not 'completed'")
    run = _path(body, event_name, dict)
    conclusion = run.get("conclusion")
    if conclusion not in (FAILED_RUN if event_name == "workflow_run" else FAILED_SUITE):
        return _ignored(f"{event_name} conclusion {str(conclusion)[:60]!r} is not a failure")
    payload = {
        "provider": "github",
        "trigger": event_name,
        "repository": _path(body, "repository.full_name", str),
        "clone_url": _path(body, "repository.clone_url", str),
        "commit": _path(body, f"{event_name}.head_sha", str),
        "branch": _path(body, f"{event_name}.head_branch", str, required=False),
        "conclusion": conclusion,
        **(_workflow_run_details(body) if event_name == "workflow_run" else _check_suite_details(body)),
        "github": body,
    }
    return Parsed(events=[Event(source="github", kind="ci_failure", dedup_key=key, payload=payload)])


def _workflow_run_details(body: dict[str, Any]) -> dict[str, Any]:
    # GitHub's own example leaves workflow_run.name empty; the workflow object names it too.
    name = (_path(body, "workflow_run.name", str, required=False)
            or _path(body, "workflow.name", str, required=False))
    return {"url": _path(body, "workflow_run.html_url", str), "name": name}


def _check_suite_details(body: dict[str, Any]) -> dict[str, Any]:
    # A check suite has no html_url; its API url is what identifies it.
    return {"url": _path(body, "check_suite.url", str),
            "name": _path(body, "check_suite.app.name", str, required=False)}


def _path(body: dict[str, Any], path: str, kind: type, *, required: bool = True) -> Any:
    """The value at a dotted path, of the type given; a missing optional one is None."""
    value: Any = body
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        raise WebhookError(400, f"{path} is missing or not a {'JSON object' if kind is dict else 'string'}")
    return value


# --- alertmanager ---------------------------------------------------------------------

# Both go into the dedup key: printable ASCII, short.
KeyPart = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]


class AlertmanagerAlert(BaseModel):
    """One alert of Alertmanager's webhook (version 4); fields it may add later are ignored."""

    model_config = ConfigDict(extra="ignore")
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: KeyPart
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: KeyPart


class AlertmanagerMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    version: Literal["4"]
    groupKey: str = ""
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    truncatedAlerts: int = 0
    alerts: list[AlertmanagerAlert]


def alert_dedup_key(fingerprint: str, starts_at: str, status: str) -> str:
    """One firing and one resolution per occurrence of an alert (fingerprint + start)."""
    return f"alertmanager:{fingerprint}:{starts_at}:{status}"


def alertmanager_events(body: dict[str, Any]) -> Parsed:
    """One event per alert: ``alert_firing`` or ``alert_resolved``."""
    try:
        message = AlertmanagerMessage.model_validate(body)
    except ValidationError as exc:
        raise WebhookError(400, f"not an Alertmanager v4 webhook payload: {_describe(exc)}") from None
    if not message.alerts:
        return _ignored("the notification holds no alerts")
    return Parsed(events=[_alert_event(message, alert) for alert in message.alerts])


def _alert_event(message: AlertmanagerMessage, alert: AlertmanagerAlert) -> Event:
    payload = {
        "alertname": alert.labels.get("alertname"), "status": alert.status, "labels": alert.labels,
        "annotations": alert.annotations, "fingerprint": alert.fingerprint, "startsAt": alert.startsAt,
        "endsAt": alert.endsAt, "generatorURL": alert.generatorURL, "receiver": message.receiver,
        "externalURL": message.externalURL, "groupKey": message.groupKey,
    }
    return Event(source="alertmanager", kind=f"alert_{alert.status}",
                 dedup_key=alert_dedup_key(alert.fingerprint, alert.startsAt, alert.status), payload=payload)


def _describe(exc: ValidationError, most: int = 5) -> str:
    """'alerts.0.fingerprint: Field required; ...', the first few faults."""
    faults = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:most]]
    more = exc.error_count() - len(faults)
    return "; ".join(faults) + (f" (and {more} more)" if more > 0 else "")


# --- generic --------------------------------------------------------------------------

def generic_events(delivery: str | None, body: dict[str, Any]) -> Parsed:
    """Any signed JSON object: its ``kind`` (default ``generic``) names the event."""
    key = f"generic:{_delivery(delivery, 'X-HA-Delivery')}"
    kind = body.get("kind", "generic")
    try:
        event = Event(source="generic", kind=kind, dedup_key=key, payload=body)
    except ValidationError as exc:
        raise WebhookError(400, f'the body\'s "kind": {exc.errors()[0]["msg"]}') from None
    return Parsed(events=[event])


# --- rate ------------------------------------------------------------------------------

class RateLimits:
    """A token bucket per source: ``per_min`` requests a minute, bursts up to that many.
    In-process: each API process limits what it is sent."""

    def __init__(self, per_min: int) -> None:
        self.capacity = float(per_min)
        self.per_s = per_min / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}   # source -> (tokens, at)

    def take(self, source: str, now: float) -> float:
        """0 when a request may pass (it takes a token), else the seconds until one may."""
        tokens, at = self._buckets.get(source, (self.capacity, now))
        tokens = min(self.capacity, tokens + max(0.0, now - at) * self.per_s)
        if tokens >= 1.0:
            self._buckets[source] = (tokens - 1.0, now)
            return 0.0
        self._buckets[source] = (tokens, now)
        return (1.0 - tokens) / self.per_s
