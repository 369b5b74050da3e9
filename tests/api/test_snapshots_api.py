"""Rollback over REST: a journaled snapshot is restored on demand by an operator and the
restore is journaled; refused with 409 while a task holds the scope, 404 for an unknown
snapshot, 410 once it expired, 403 for a viewer; an ended task undone is rolled_back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hybrid_agent.api.auth import create_token
from hybrid_agent.rollback.journal import save
from hybrid_agent.rollback.snapshots import SnapshotStore
from hybrid_agent.store import queries
from tests.rollback.tree_support import tree_state


async def journaled_snapshot(settings, sessions, scope, task_id=None):
    store = SnapshotStore(settings.rollback_dir)
    snapshot = store.create(scope, task_id=task_id, step=1 if task_id else None)
    async with sessions.begin() as session:
        await save(session, snapshot)
    return store, snapshot


async def test_an_operator_rolls_a_scope_back_and_the_restore_is_journaled(api, settings, sessions, tmp_path):
    scope = tmp_path / "site"
    scope.mkdir()
    (scope / "index.html").write_text("<h1>v1</h1>")
    before = tree_state(scope)
    _, snapshot = await journaled_snapshot(settings, sessions, scope)
    (scope / "index.html").write_text("<h1>broken</h1>")
    (scope / "debug.log").write_text("x")
    response = await api.post(f"/api/snapshots/{snapshot.id}/rollback")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] and body["reason"] == "on_demand" and body["requested_by"] == "admin"
    assert (body["report"]["modified"], body["report"]["removed"]) == (1, 1)
    assert tree_state(scope) == before
    restores = (await api.get(f"/api/snapshots/{snapshot.id}/restores")).json()
    assert [r["reason"] for r in restores] == ["on_demand"]
    listed = (await api.get("/api/snapshots")).json()
    assert [s["id"] for s in listed] == [snapshot.id]


async def test_rollback_is_refused_while_a_task_holds_the_scope(api, settings, sessions, tmp_path):
    scope = tmp_path / "busy"
    scope.mkdir()
    store, snapshot = await journaled_snapshot(settings, sessions, scope)
    (scope / "work-in-progress").write_text("x")
    with store.lease(scope, holder="task t9"):
        response = await api.post(f"/api/snapshots/{snapshot.id}/rollback")
    assert response.status_code == 409
    assert "task t9" in response.json()["detail"]
    assert (scope / "work-in-progress").exists()


async def test_unknown_and_expired_snapshots(api, settings, sessions, tmp_path):
    assert (await api.post("/api/snapshots/snap_nope/rollback")).status_code == 404
    scope = tmp_path / "old"
    scope.mkdir()
    _, snapshot = await journaled_snapshot(settings, sessions, scope)
    async with sessions.begin() as session:
        await queries.expire_snapshots(session, before=datetime.now(timezone.utc) + timedelta(days=1))
    response = await api.post(f"/api/snapshots/{snapshot.id}/rollback")
    assert response.status_code == 410 and "expired" in response.json()["detail"]


async def test_a_viewer_cannot_roll_back(api, settings, sessions, tmp_path):
    scope = tmp_path / "v"
    scope.mkdir()
    _, snapshot = await journaled_snapshot(settings, sessions, scope)
    viewer = await create_token(sessions, name="watcher", role="viewer")
    response = await api.post(f"/api/snapshots/{snapshot.id}/rollback", headers={"Authorization": f"Bearer {viewer}"})
    assert response.status_code == 403
    assert (await api.get("/api/snapshots", headers={"Authorization": f"Bearer {viewer}"})).status_code == 200


async def test_an_ended_task_rolled_back_on_demand_is_marked_rolled_back(api, settings, sessions, tmp_path):
    scope = tmp_path / "t"
    scope.mkdir()
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[], tasks=[{
            "id": "done1", "event_id": None, "goal": "g", "status": "succeeded", "workspace": str(scope),
            "queue": "default", "requested_by": "test", "result": {"summary": "did it", "success": True}}])
    _, snapshot = await journaled_snapshot(settings, sessions, scope, task_id="done1")
    (scope / "made-by-task").write_text("x")
    assert (await api.post(f"/api/snapshots/{snapshot.id}/rollback")).status_code == 200
    task = (await api.get("/api/tasks/done1")).json()
    assert task["status"] == "rolled_back" and task["result"]["summary"] == "did it"
    assert task["result"]["rollback"]["by"] == "admin"
    assert not (scope / "made-by-task").exists()
