"""GET /api/events: what the triggers received and why each rule did or did not start a task."""

import httpx

from hybrid_agent.bus.messages import Event
from hybrid_agent.triggers.outbox import Outbox
from hybrid_agent.triggers.router import Router
from hybrid_agent.triggers.rules import parse_rules, task_id_for
from tests.triggers.test_router import route_everything

RULES = parse_rules({"rules": [
    {"name": "page", "when": {"source": "generic", "all": [{"path": "severity", "value": "page"}]},
     "then": {"goal": "Look at {{ payload.host }}"}}]})


async def test_an_event_shows_each_rules_decision_and_its_task(api, sessions):
    bus = api.app.state.bus
    router = Router(bus, sessions, rules=RULES)
    paged = Event(source="generic", kind="alert", payload={"severity": "page", "host": "db-1"})
    quiet = Event(source="generic", kind="alert", payload={"severity": "info"})
    for event in (paged, quiet):
        await Outbox(bus, sessions).emit(event)
    await route_everything(router, bus, expected=2)
    await router.journal.close()

    shown = (await api.get(f"/api/events/{paged.id}")).json()
    assert shown["published_at"] is not None
    assert shown["routing"] == [{"rule": "page", "matched": True, "why": ["generic.alert", "severity = 'page' eq 'page'"],
                                 "task_id": task_id_for(paged.id, "page")}]
    task = (await api.get(f"/api/tasks/{task_id_for(paged.id, 'page')}")).json()
    assert task["event_id"] == paged.id and task["rule"] == "page" and task["goal"] == "Look at db-1"
    quiet_shown = (await api.get(f"/api/events/{quiet.id}")).json()
    assert quiet_shown["routing"][0]["why"] == ["not: severity = 'info' eq 'page'"]
    listed = (await api.get("/api/events", params={"source": "generic"})).json()
    assert {e["id"] for e in listed} == {paged.id, quiet.id}


async def test_unknown_events_are_404_and_events_need_a_token(api):
    assert (await api.get("/api/events/nope")).status_code == 404
    anonymous = httpx.AsyncClient(transport=api._transport, base_url="http://api")
    assert (await anonymous.get("/api/events")).status_code == 401
