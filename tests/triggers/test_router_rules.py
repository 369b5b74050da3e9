"""The router applies the rules: a task per matching rule, each event's decisions stored
with their reasons, cooldowns per resource, and no loop from a task's own file writes."""

from datetime import timedelta

import pytest

from hybrid_agent.bus.messages import Event
from hybrid_agent.store import queries
from hybrid_agent.store.tables import utcnow
from hybrid_agent.triggers.router import Router
from hybrid_agent.triggers.rules import parse_rules, task_id_for
from tests.triggers.test_router import route_everything

RULES = parse_rules({"rules": [
    {"name": "ci-fix", "when": {"source": "github", "kind": "ci_failure"},
     "then": {"template": "ci_remediation", "params": {"repo": "{{ payload.clone_url }}"}}},
    {"name": "ci-notify", "when": {"source": "github", "all": [{"path": "branch", "value": "main"}]},
     "then": {"goal": "Tell the team that {{ payload.branch }} is red", "queue": "notify"}},
    {"name": "disk", "when": {"source": "alertmanager", "kind": "alert_firing"},
     "then": {"goal": "Free disk space on {{ payload.labels.instance }}"},
     "cooldown": {"seconds": 3600, "per": "{{ payload.labels.instance }}"}},
    {"name": "inbox", "when": {"source": "file", "kind": "changed"},
     "then": {"goal": "Process the new files in the inbox", "workspace": "{{ payload.root }}"}},
]})


@pytest.fixture
async def router(embedded_bus, sessions):
    router = Router(embedded_bus, sessions, rules=RULES)
    yield router
    await router.journal.close()


async def route(router: Router, *events: Event) -> None:
    for event in events:
        await router.bus.publish_event(event)
    await route_everything(router, router.bus, expected=len(events))


async def test_an_event_starts_a_task_for_every_rule_it_matches_and_records_why(router, sessions):
    event = Event(source="github", kind="ci_failure", payload={"clone_url": "/srv/app", "branch": "main"})
    await route(router, event)
    async with sessions() as session:
        row = await queries.get_event(session, event_id=event.id)
        fix = await queries.get_task(session, task_id=task_id_for(event.id, "ci-fix"))
        notify = await queries.get_task(session, task_id=task_id_for(event.id, "ci-notify"))
    assert fix.template == "ci_remediation" and fix.params["repo"] == "/srv/app" and fix.rule == "ci-fix"
    assert notify.goal == "Tell the team that main is red" and notify.queue == "notify"
    decisions = {d["rule"]: d for d in row.routing}
    assert decisions["ci-fix"]["matched"] and decisions["ci-fix"]["task_id"] == fix.id
    assert decisions["ci-notify"]["why"] == ["github.ci_failure", "branch = 'main' eq 'main'"]
    assert decisions["disk"] == {"rule": "disk", "matched": False, "why": ["source github is not alertmanager"],
                                 "task_id": None}


async def test_an_event_no_rule_matches_is_kept_with_its_reasons_and_starts_nothing(router, sessions):
    event = Event(source="github", kind="push", payload={"branch": "dev"})
    await route(router, event)
    async with sessions() as session:
        row = await queries.get_event(session, event_id=event.id)
        assert await queries.count_tasks(session) == 0
    assert not any(d["matched"] for d in row.routing)
    assert "not: branch = 'dev' eq 'main'" in [d["why"][0] for d in row.routing]


def alert(instance: str) -> Event:
    return Event(source="alertmanager", kind="alert_firing", payload={"labels": {"instance": instance}})


async def test_a_cooldown_holds_per_resource(router, sessions):
    first, again, other = alert("web-1"), alert("web-1"), alert("web-2")
    await route(router, first, again, other)
    async with sessions() as session:
        started = {task.goal for task in await queries.list_tasks(session)}
        cooled = await queries.get_event(session, event_id=again.id)
    assert started == {"Free disk space on web-1", "Free disk space on web-2"}
    assert cooled.routing[2]["matched"] is False and cooled.routing[2]["why"][-1] == "cooling down for web-1"


async def test_a_redelivered_event_keeps_the_cooldown_it_took(router, sessions):
    event = alert("db-1")
    await route(router, event)
    await router.route([(None, event)])   # as if the ack had been lost
    async with sessions() as session:
        assert [t.id for t in await queries.list_tasks(session)] == [task_id_for(event.id, "disk")]
        row = await queries.get_event(session, event_id=event.id)
    assert row.routing[2]["matched"] is True


async def test_an_expired_cooldown_lets_the_rule_fire_again(router, sessions):
    await route(router, alert("web-9"))
    later = alert("web-9")
    later.created_at = utcnow() + timedelta(hours=2)
    await route(router, later)
    async with sessions() as session:
        assert await queries.count_tasks(session) == 2


async def test_a_tasks_own_file_writes_do_not_start_another_task_of_its_rule(router, sessions, tmp_path):
    inbox = tmp_path / "inbox"
    first = Event(source="file", kind="changed", payload={"root": str(inbox), "paths": ["a.csv"]})
    await route(router, first)
    task_id = task_id_for(first.id, "inbox")
    async with sessions.begin() as session:   # its worker runs it in the inbox
        await queries.start_task(session, task_id=task_id, isolation="test", workspace=str(inbox))
    own = Event(source="file", kind="changed", payload={"root": str(inbox), "paths": ["a.csv.done"]})
    elsewhere = Event(source="file", kind="changed", payload={"root": str(tmp_path / "other"), "paths": ["b.csv"]})
    await route(router, own, elsewhere)
    async with sessions() as session:
        row = await queries.get_event(session, event_id=own.id)
        assert await queries.get_task(session, task_id=task_id_for(own.id, "inbox")) is None
        assert await queries.get_task(session, task_id=task_id_for(elsewhere.id, "inbox")) is not None
    assert row.routing[3]["why"][-1] == f"the agent's own writes (task {task_id} of this rule works there)"
