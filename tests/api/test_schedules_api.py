"""Schedules over REST: an operator creates, replaces and deletes cron schedules (origin api,
created by the token's name); everyone with a token lists them with their next run; a bad
cron or time zone is a 422 naming the field; the rules file's schedules are read-only (409);
a viewer may not write (403)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from hybrid_agent.api.auth import create_token
from hybrid_agent.store import queries


async def viewer(api, sessions) -> httpx.AsyncClient:
    token = await create_token(sessions, name="watcher", role="viewer")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://api",
                             headers={"Authorization": f"Bearer {token}"})


async def test_an_operator_creates_lists_replaces_and_deletes_a_schedule(api):
    created = await api.post("/api/schedules", json={"name": "disk-check", "cron": "*/15 * * * *",
                                                     "kind": "disk", "payload": {"mount": "/var"}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert {key: body[key] for key in ("name", "cron", "timezone", "kind", "payload", "misfire_grace_s",
                                       "enabled", "origin", "created_by")} == {
        "name": "disk-check", "cron": "*/15 * * * *", "timezone": "UTC", "kind": "disk",
        "payload": {"mount": "/var"}, "misfire_grace_s": 60, "enabled": True, "origin": "api", "created_by": "admin"}
    next_run = datetime.fromisoformat(body["next_run_at"])
    assert next_run > datetime.now(UTC) and next_run.minute % 15 == 0 and next_run.second == 0

    replaced = await api.post("/api/schedules", json={"name": "disk-check", "cron": "0 9 * * 1-5",
                                                      "timezone": "Europe/Paris", "enabled": False})
    assert replaced.status_code == 201, replaced.text
    assert (replaced.json()["cron"], replaced.json()["kind"], replaced.json()["next_run_at"]) == (
        "0 9 * * 1-5", "tick", None)   # disabled: no next run
    assert replaced.json()["created_at"] == body["created_at"]

    listed = (await api.get("/api/schedules")).json()
    assert [(s["name"], s["timezone"], s["enabled"]) for s in listed] == [("disk-check", "Europe/Paris", False)]

    assert (await api.delete("/api/schedules/disk-check")).status_code == 204
    assert (await api.get("/api/schedules")).json() == []
    assert (await api.delete("/api/schedules/disk-check")).status_code == 404


async def test_next_run_is_read_in_the_schedule_time_zone(api):
    response = await api.post("/api/schedules", json={"name": "tokyo-morning", "cron": "30 6 * * *",
                                                      "timezone": "Asia/Tokyo"})
    next_run = datetime.fromisoformat(response.json()["next_run_at"])
    assert next_run.astimezone(UTC).hour == 21 and next_run.minute == 30   # 06:30 JST is 21:30 UTC


async def test_a_bad_cron_or_time_zone_is_a_422_naming_the_field(api, sessions):
    bad_cron = await api.post("/api/schedules", json={"name": "broken", "cron": "61 * * * *"})
    assert bad_cron.status_code == 422
    (error,) = bad_cron.json()["detail"]
    assert error["loc"] == ["body", "cron"] and "cron '61 * * * *': minute: " in error["msg"]

    bad_zone = await api.post("/api/schedules", json={"name": "broken", "cron": "0 * * * *",
                                                      "timezone": "Mars/Base"})
    assert bad_zone.status_code == 422
    (error,) = bad_zone.json()["detail"]
    assert error["loc"] == ["body", "timezone"] and "unknown time zone 'Mars/Base'" in error["msg"]

    bad_name = await api.post("/api/schedules", json={"name": "Not A Name", "cron": "0 * * * *"})
    assert bad_name.status_code == 422 and bad_name.json()["detail"][0]["loc"] == ["body", "name"]
    async with sessions() as session:
        assert await queries.list_schedules(session) == []


async def test_the_rules_file_schedules_cannot_be_replaced_or_deleted_over_the_api(api, sessions):
    async with sessions.begin() as session:
        await queries.upsert_schedule(session, schedule={
            "name": "nightly", "cron": "0 3 * * *", "timezone": "UTC", "kind": "backup", "payload": {},
            "misfire_grace_s": 600, "enabled": True, "origin": "rules", "created_by": None})
    replaced = await api.post("/api/schedules", json={"name": "nightly", "cron": "0 4 * * *"})
    assert replaced.status_code == 409
    assert "defined in the rules file" in replaced.json()["detail"]
    deleted = await api.delete("/api/schedules/nightly")
    assert deleted.status_code == 409 and "rules file" in deleted.json()["detail"]
    (listed,) = (await api.get("/api/schedules")).json()
    assert (listed["cron"], listed["origin"], listed["created_by"]) == ("0 3 * * *", "rules", None)
    assert datetime.fromisoformat(listed["next_run_at"]).hour == 3


async def test_a_viewer_lists_schedules_but_cannot_write_them(api, sessions):
    await api.post("/api/schedules", json={"name": "hourly", "cron": "0 * * * *"})
    async with await viewer(api, sessions) as client:
        assert [s["name"] for s in (await client.get("/api/schedules")).json()] == ["hourly"]
        refused = await client.post("/api/schedules", json={"name": "mine", "cron": "0 * * * *"})
        assert refused.status_code == 403
        assert (await client.delete("/api/schedules/hourly")).status_code == 403
    assert [s["name"] for s in (await api.get("/api/schedules")).json()] == ["hourly"]
