"""Submitting and reading tasks over REST: auth on everything but health, 422 naming the
field at fault, and nothing stored for a rejected request."""

import pytest

from hybrid_agent.api.auth import create_token
from hybrid_agent.store import queries


async def stored_counts(api, sessions) -> tuple[int, int]:
    await api.app.state.journal.flush()  # the journal is written in batches
    async with sessions() as session:
        tasks = await queries.count_tasks(session)
        events = len(await queries.journal_of_kind(session, kind="event.published"))
    return tasks, events


async def test_health_needs_no_token(api):
    response = await api.get("/healthz", headers={"Authorization": ""})
    assert response.status_code == 200


async def test_a_submission_is_stored_published_and_readable(api, sessions, tmp_path):
    response = await api.post("/api/tasks", json={"goal": "make a file", "workspace": str(tmp_path / "w")})
    assert response.status_code == 201
    created = response.json()
    assert created["status"] == "queued"
    await api.app.state.journal.flush()  # the journal is written in batches
    task = (await api.get(f"/api/tasks/{created['id']}")).json()
    assert task["goal"] == "make a file" and task["workspace"] == str(tmp_path / "w")
    assert [j["kind"] for j in task["journal"]] == ["event.published"]
    assert task["journal"][0]["detail"]["stream"] == "EVENTS"
    listed = (await api.get("/api/tasks")).json()
    assert [t["id"] for t in listed] == [created["id"]]


async def test_a_submission_names_its_queue_and_priority(api):
    created = (await api.post("/api/tasks", json={"goal": "page me", "queue": "ops", "priority": 7})).json()
    task = (await api.get(f"/api/tasks/{created['id']}")).json()
    assert (task["queue"], task["priority"]) == ("ops", 7)


async def test_the_same_idempotency_key_is_one_task(api, sessions):
    first = await api.post("/api/tasks", json={"goal": "g"}, headers={"Idempotency-Key": "abc"})
    second = await api.post("/api/tasks", json={"goal": "g"}, headers={"Idempotency-Key": "abc"})
    assert first.json()["id"] == second.json()["id"]
    assert await stored_counts(api, sessions) == (1, 1)


@pytest.mark.parametrize("body, field", [
    ({}, "goal"),
    ({"goal": 42}, "goal"),
    ({"goal": ""}, "goal"),
    ({"goal": "g", "workspace": ["x"]}, "workspace"),
    ({"goal": "g", "workspace": "/etc"}, "workspace"),
    ({"goal": "g", "workspace": "/tmp/../etc/cron.d"}, "workspace"),
    ({"goal": "g", "priority": 10}, "priority"),
    ({"goal": "g", "queue": "Not A Queue"}, "queue"),
    ({"goal": "g", "colour": "red"}, "colour"),
])
async def test_a_bad_submission_is_422_naming_the_field_and_stores_nothing(api, sessions, body, field):
    response = await api.post("/api/tasks", json=body)
    assert response.status_code == 422
    assert any(error["loc"][-1] == field for error in response.json()["detail"])
    assert await stored_counts(api, sessions) == (0, 0)
    async with sessions() as session:
        incidents = await queries.journal_of_kind(session, kind="incident.rejected_request")
    assert incidents[0].detail["status"] == 422


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer "])
async def test_no_token_or_a_wrong_one_is_401_and_stores_nothing(api, sessions, header):
    headers = {"Authorization": header} if header is not None else {}
    api.headers.pop("Authorization")
    response = await api.post("/api/tasks", json={"goal": "g"}, headers=headers)
    assert response.status_code == 401
    assert (await api.get("/api/tasks", headers=headers)).status_code == 401
    assert await stored_counts(api, sessions) == (0, 0)


async def test_a_viewer_may_read_but_not_submit(api, sessions):
    viewer = await create_token(sessions, name="watcher", role="viewer")
    headers = {"Authorization": f"Bearer {viewer}"}
    assert (await api.get("/api/tasks", headers=headers)).status_code == 200
    assert (await api.post("/api/tasks", json={"goal": "g"}, headers=headers)).status_code == 403


async def test_an_unknown_task_is_404(api):
    assert (await api.get("/api/tasks/nope")).status_code == 404


async def test_a_nul_character_is_refused_naming_the_field(api, sessions):
    response = await api.post("/api/tasks", json={"goal": "tidy\x00up"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "goal"]
    assert await stored_counts(api, sessions) == (0, 0)


async def test_readiness_needs_no_token_and_says_which_part_is_down(api):
    ready = await api.get("/readyz", headers={"Authorization": ""})
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "store": "ok", "bus": "ok"}
    await api.app.state.bus.nc.close()   # the bus goes away
    down = await api.get("/readyz", headers={"Authorization": ""})
    assert down.status_code == 503 and down.json()["bus"] == "disconnected" and down.json()["store"] == "ok"


async def test_readiness_says_whether_a_configured_redis_answers(api):
    from hybrid_agent.bus.embedded import free_port
    from tests.conftest import REDIS_URL

    settings = api.app.state.settings
    api.app.state.settings = settings.model_copy(update={"redis_url": REDIS_URL})
    ready = await api.get("/readyz", headers={"Authorization": ""})
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "store": "ok", "bus": "ok", "redis": "ok"}
    api.app.state.settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    degraded = await api.get("/readyz", headers={"Authorization": ""})
    # The API serves without Redis; what needs it (leases) is said to be down.
    assert degraded.status_code == 200
    assert degraded.json() == {"status": "degraded", "store": "ok", "bus": "ok", "redis": "unreachable"}
