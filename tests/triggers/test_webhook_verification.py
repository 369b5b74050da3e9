"""Webhook verification and parsing, without HTTP: signatures over the raw bytes, the stale
timestamp window, Alertmanager's credentials, and each source's body turned into events
(or refused with a status and a reason that holds no secret)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from hybrid_agent.triggers import webhooks
from hybrid_agent.triggers.webhooks import RateLimits, WebhookError

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = "It's a Secret to Everybody"
NOW = 1_741_680_000.0


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def refused(status: int, call, *args, **kwargs) -> str:
    with pytest.raises(WebhookError) as caught:
        call(*args, **kwargs)
    assert caught.value.status == status, caught.value.detail
    return caught.value.detail


# --- signatures -------------------------------------------------------------------------

def test_github_signature_matches_githubs_published_test_vector():
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert webhooks.sign(SECRET, b"Hello, World!") == expected
    webhooks.verify_github(SECRET, b"Hello, World!", expected)


def test_github_signature_is_over_the_raw_bytes_as_received():
    raw = payload("github_workflow_run_failure.json")
    # The signature SOURCES.md of the sample deliveries gives for these exact bytes.
    webhooks.verify_github(SECRET, raw, "sha256=000a3492e053d884a2bc6e0644423ad041931462cfb232573abebd82957531dd")
    reserialised = json.dumps(json.loads(raw)).encode()
    refused(401, webhooks.verify_github, SECRET, reserialised, webhooks.sign(SECRET, raw))


@pytest.mark.parametrize("header, says", [
    (None, "missing X-Hub-Signature-256"),
    ("", "missing X-Hub-Signature-256"),
    ("sha1=0123abcd", "must be sha256="),
    ("sha256=" + "0" * 64, "does not match"),
    ("sha256=\u00e9\u00ff not hex", "does not match"),
])
def test_a_missing_or_wrong_github_signature_is_401_without_echoing_it(header, says):
    detail = refused(401, webhooks.verify_github, SECRET, b"{}", header)
    assert says in detail
    assert SECRET not in detail and (not header or header.partition("=")[2] not in detail)


def test_generic_signature_covers_the_timestamp_and_the_body():
    body, stamp = b'{"kind": "deploy"}', str(int(NOW))
    good = webhooks.sign(SECRET, f"{stamp}.".encode() + body)
    webhooks.verify_generic(SECRET, body, timestamp=stamp, signature=good, now=NOW, max_age_s=300)
    # Another timestamp (a replay re-dated) or the body alone does not verify.
    later = str(int(NOW) + 10)
    assert "does not match" in refused(401, webhooks.verify_generic, SECRET, body, timestamp=later,
                                       signature=good, now=NOW, max_age_s=300)
    assert "does not match" in refused(401, webhooks.verify_generic, SECRET, body, timestamp=stamp,
                                       signature=webhooks.sign(SECRET, body), now=NOW, max_age_s=300)


@pytest.mark.parametrize("offset_s", [-301, 301, -86400])
def test_a_generic_timestamp_outside_the_window_is_stale(offset_s):
    stamp = str(int(NOW + offset_s))
    good = webhooks.sign(SECRET, f"{stamp}.{{}}".encode())
    detail = refused(401, webhooks.verify_generic, SECRET, b"{}", timestamp=stamp, signature=good, now=NOW,
                     max_age_s=300)
    assert "stale" in detail


@pytest.mark.parametrize("stamp", [None, "", "soon", "1_741_680_000", "-5", " 1741680000", "1e9"])
def test_a_generic_timestamp_must_be_unix_seconds(stamp):
    detail = refused(401, webhooks.verify_generic, SECRET, b"{}", timestamp=stamp, signature="sha256=00",
                     now=NOW, max_age_s=300)
    assert "X-HA-Timestamp" in detail


def test_alertmanager_accepts_the_token_as_bearer_or_as_basic_user_password():
    token = "hybrid:am-token"
    webhooks.verify_alertmanager(token, f"Bearer {token}")
    webhooks.verify_alertmanager(token, f"bearer {token}")
    webhooks.verify_alertmanager(token, "Basic " + base64.b64encode(token.encode()).decode())


@pytest.mark.parametrize("authorization, says", [
    (None, "missing Authorization"),
    ("Bearer wrong", "credentials are wrong"),
    ("Bearer ", "credentials are wrong"),
    ("Basic " + base64.b64encode(b"hybrid:wrong").decode(), "credentials are wrong"),
    ("Basic not*base64", "malformed basic credentials"),
    ("Basic \u00e9\u00e9", "malformed basic credentials"),
    ("Token hybrid:am-token", "must be Bearer or Basic"),
])
def test_wrong_alertmanager_credentials_are_401(authorization, says):
    detail = refused(401, webhooks.verify_alertmanager, "hybrid:am-token", authorization)
    assert says in detail and "am-token" not in detail


# --- bodies -----------------------------------------------------------------------------

@pytest.mark.parametrize("body, says", [
    (b"{not json", "Expecting property name enclosed in double quotes"),
    (b"", "Expecting value"),
    (b"\xff\xfe\xfa", "malformed JSON"),
    (b'{"a": NaN}', "NaN is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed JSON"),
    (b"[1, 2]", "must be a JSON object, not list"),
    (b'"text"', "must be a JSON object, not str"),
])
def test_a_body_must_be_a_json_object_and_a_fault_says_why(body, says):
    assert says in refused(400, webhooks.parse_json_object, body)


def test_a_failed_workflow_run_becomes_one_normalised_ci_failure_event():
    body = json.loads(payload("github_workflow_run_failure.json"))
    (event,) = webhooks.github_events("workflow_run", "72d3162e-cc78-11e3-81ab-4c9367dc0958", body).events
    assert (event.source, event.kind) == ("github", "ci_failure")
    assert event.dedup_key == "github:72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert {k: v for k, v in event.payload.items() if k != "github"} == {
        "provider": "github", "trigger": "workflow_run", "repository": "octo-org/octo-repo",
        "clone_url": "https://github.com/octo-org/octo-repo.git",
        "commit": "3484a3fb816e0859fd6e1cea078d76385ff50625", "branch": "master", "conclusion": "failure",
        "url": "https://github.com/octo-org/octo-repo/actions/runs/289782451", "name": "test"}
    assert event.payload["github"] == body


def test_a_failed_check_suite_becomes_one_ci_failure_event_named_by_its_app():
    body = json.loads(payload("github_check_suite_failure.json"))
    (event,) = webhooks.github_events("check_suite", "d1", body).events
    assert event.payload["trigger"] == "check_suite"
    assert event.payload["url"] == "https://api.github.com/repos/Codertocat/Hello-World/check-suites/118578147"
    assert (event.payload["name"], event.payload["branch"]) == ("octocoders-linter", "changes")
    assert event.payload["commit"] == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


@pytest.mark.parametrize("conclusion", ["failure", "timed_out", "startup_failure"])
def test_every_failed_workflow_run_conclusion_is_a_ci_failure(conclusion):
    body = json.loads(payload("github_workflow_run_failure.json"))
    body["workflow_run"]["conclusion"] = conclusion
    assert len(webhooks.github_events("workflow_run", "d1", body).events) == 1


@pytest.mark.parametrize("event_name, change, says", [
    ("push", None, "event 'push' is not handled"),
    ("workflow_run", ("action", "requested"), "action 'requested' is not 'completed'"),
    ("workflow_run", ("conclusion", "success"), "conclusion 'success' is not a failure"),
    ("workflow_run", ("conclusion", "cancelled"), "conclusion 'cancelled' is not a failure"),
    ("check_suite", ("conclusion", "startup_failure"), "conclusion 'startup_failure' is not a failure"),
    ("check_suite", ("conclusion", None), "conclusion 'None' is not a failure"),
])
def test_other_github_events_actions_and_conclusions_are_ignored_saying_why(event_name, change, says):
    name = "github_check_suite_failure.json" if event_name == "check_suite" else "github_workflow_run_failure.json"
    body = json.loads(payload(name))
    if change and change[0] == "action":
        body["action"] = change[1]
    elif change:
        body[event_name]["conclusion"] = change[1]
    parsed = webhooks.github_events(event_name, "d1", body)
    assert parsed.events == [] and says in parsed.answer["ignored"]


def test_a_github_ping_is_answered_with_pong():
    parsed = webhooks.github_events("ping", "d1", json.loads(payload("github_ping.json")))
    assert parsed.events == [] and parsed.answer == {"pong": True}


@pytest.mark.parametrize("event_name, delivery, says", [
    ("workflow_run", None, "missing X-GitHub-Delivery"),
    ("workflow_run", "has space", "X-GitHub-Delivery must be 1 to 128 printable ASCII"),
    ("workflow_run", "x" * 129, "X-GitHub-Delivery must be 1 to 128 printable ASCII"),
    (None, "d1", "missing X-GitHub-Event"),
])
def test_github_headers_are_required(event_name, delivery, says):
    body = json.loads(payload("github_workflow_run_failure.json"))
    assert says in refused(400, webhooks.github_events, event_name, delivery, body)


def test_a_failed_run_without_its_repository_is_refused_naming_the_field():
    body = json.loads(payload("github_workflow_run_failure.json"))
    del body["repository"]["full_name"]
    assert "repository.full_name is missing" in refused(400, webhooks.github_events, "workflow_run", "d1", body)
    body["workflow_run"] = "not an object"
    assert "workflow_run is missing or not a JSON object" in refused(
        400, webhooks.github_events, "workflow_run", "d1", body)


def test_alertmanager_makes_one_event_per_alert_ignoring_unknown_fields():
    events = webhooks.alertmanager_events(json.loads(payload("alertmanager_v4.json"))).events
    assert [(e.source, e.kind) for e in events] == [("alertmanager", "alert_firing"),
                                                    ("alertmanager", "alert_resolved")]
    firing, resolved = events
    assert firing.dedup_key == "alertmanager:f56f44b05dfccb6c:2025-03-11T08:14:37.512Z:firing"
    assert resolved.dedup_key == "alertmanager:7a63e726284bb8b4:2025-03-11T07:41:07.208Z:resolved"
    assert set(firing.payload) == {"alertname", "status", "labels", "annotations", "fingerprint", "startsAt",
                                   "endsAt", "generatorURL", "receiver", "externalURL", "groupKey"}
    assert firing.payload["alertname"] == "NodeFilesystemAlmostFull"
    assert firing.payload["labels"]["mountpoint"] == "/var/log"
    assert firing.payload["generatorURL"].endswith("&g0.tab=1")
    assert resolved.payload["endsAt"] == "2025-03-11T08:16:07.208Z"
    assert resolved.payload["receiver"] == "infra-webhook"


@pytest.mark.parametrize("mutate, says", [
    (lambda b: b["alerts"][0].pop("fingerprint"), "alerts.0.fingerprint: Field required"),
    (lambda b: b["alerts"][1].update(status="pending"), "alerts.1.status"),
    (lambda b: b["alerts"][0].update(startsAt="2025\x0003"), "alerts.0.startsAt"),
    (lambda b: b["alerts"][0]["labels"].update(severity=3), "alerts.0.labels.severity"),
    (lambda b: b.update(version="3"), "version"),
    (lambda b: b.pop("alerts"), "alerts: Field required"),
])
def test_a_body_that_is_not_an_alertmanager_v4_payload_is_refused_naming_the_field(mutate, says):
    body = json.loads(payload("alertmanager_v4.json"))
    mutate(body)
    detail = refused(400, webhooks.alertmanager_events, body)
    assert "not an Alertmanager v4 webhook payload" in detail and says in detail


def test_an_alertmanager_notification_without_alerts_is_ignored():
    body = json.loads(payload("alertmanager_v4.json"))
    body["alerts"] = []
    assert webhooks.alertmanager_events(body).answer == {"ignored": "the notification holds no alerts"}


def test_a_generic_body_is_the_payload_and_its_kind_names_the_event():
    (event,) = webhooks.generic_events("delivery-1", {"kind": "deploy_failed", "service": "api"}).events
    assert (event.source, event.kind, event.dedup_key) == ("generic", "deploy_failed", "generic:delivery-1")
    assert event.payload == {"kind": "deploy_failed", "service": "api"}
    (event,) = webhooks.generic_events("delivery-2", {"service": "api"}).events
    assert event.kind == "generic"


@pytest.mark.parametrize("kind", ["Deploy", "", "a.b", 7, None, "x" * 81])
def test_a_generic_kind_outside_the_event_kind_pattern_is_refused_naming_it(kind):
    assert 'the body\'s "kind"' in refused(400, webhooks.generic_events, "d1", {"kind": kind})


def test_a_generic_delivery_id_is_required():
    assert "missing X-HA-Delivery" in refused(400, webhooks.generic_events, None, {})


# --- garbage never escapes as anything but a WebhookError -------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


@hypothesis_settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_any_correctly_signed_generic_body_is_an_event_or_a_400(raw):
    stamp = str(int(NOW))
    headers = {"x-ha-timestamp": stamp, "x-ha-signature": webhooks.sign(SECRET, f"{stamp}.".encode() + raw),
               "x-ha-delivery": "d1"}
    try:
        parsed = webhooks.receive("generic", secret=SECRET, body=raw, headers=headers, now=NOW, max_age_s=300)
    except WebhookError as exc:
        assert exc.status == 400
    else:
        assert len(parsed.events) == 1


ALERT_FIELDS = st.fixed_dictionaries({}, optional={
    "status": st.sampled_from(["firing", "resolved", "weird"]) | JSON_VALUES,
    "labels": st.dictionaries(st.text(max_size=8), st.text(max_size=8)) | JSON_VALUES,
    "startsAt": st.text(max_size=80) | JSON_VALUES, "fingerprint": st.text(max_size=80) | JSON_VALUES,
    "annotations": JSON_VALUES, "unknown": JSON_VALUES})


@hypothesis_settings(max_examples=200, deadline=None)
@given(alerts=st.lists(ALERT_FIELDS, max_size=3), extra=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3))
def test_any_alertmanager_body_is_events_or_a_400(alerts, extra):
    body = {**extra, "version": "4", "status": "firing", "alerts": alerts}
    try:
        events = webhooks.alertmanager_events(copy.deepcopy(body)).events
    except WebhookError as exc:
        assert exc.status == 400
    else:
        assert len(events) == len(alerts)


# --- rate -------------------------------------------------------------------------------

def test_the_rate_limit_lets_a_burst_through_then_says_when_to_retry():
    limits = RateLimits(per_min=2)
    assert limits.take("github", 100.0) == 0 and limits.take("github", 100.0) == 0
    assert limits.take("github", 100.0) == pytest.approx(30.0)
    assert limits.take("generic", 100.0) == 0        # each source has its own bucket
    assert limits.take("github", 115.0) == pytest.approx(15.0)
    assert limits.take("github", 130.0) == 0         # a token every 30 s
    assert limits.take("github", 130.0) > 0
