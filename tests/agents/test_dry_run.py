"""Dry runs: the agent works on a scratch copy of its scope, the scope stays untouched, the
predicted change set (a diff of files and the commands run) waits for an approver, and
applying it gives the tree a real run gives."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hybrid_agent.bus.connection import Bus
from hybrid_agent.store import queries
from tests.agents.conftest import call, queue_task
from tests.conftest import admin_client
from tests.worker_support import finished, run_worker_until, task_status


# The loop has the agent look (or finish) after each change, hence the reads between them.
SCRIPT = [
    call("shell", cmd="gzip -n old.log && chmod 600 secret.env"),
    call("list_dir", path="."),
    call("write_file", path="reports/summary.txt", content="3 errors\n"),
    call("list_dir", path="reports"),
    call("edit", path="app.ini", old="workers = 2", new="workers = 4"),
    call("finish", summary="tidied", success=True),
]


def seed(scope: Path) -> None:
    scope.mkdir(parents=True)
    (scope / "app.ini").write_text("[server]\nport = 8080\nworkers = 2\n")
    (scope / "old.log").write_text("x" * 1000)
    (scope / "secret.env").write_text("TOKEN=abc\n")
    (scope / "keep").mkdir()
    (scope / "keep" / "data.csv").write_text("a,b\n1,2\n")


def tree(root: Path) -> dict[str, tuple]:
    """Every path below ``root`` with its type, mode and content digest."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        found[str(path.relative_to(root))] = (path.is_dir(), oct(st.st_mode & 0o7777), digest)
    return found


@pytest.fixture
async def client(settings, sessions, embedded_bus):
    async with admin_client(settings, sessions, embedded_bus) as http:
        yield http


async def queue(sessions, bus: Bus, task_id: str, scope: Path, *, dry_run: bool) -> None:
    await queue_task(sessions, bus, task_id, goal="tidy the service folder", workspace=str(scope), dry_run=dry_run)


async def parked(sessions, task_id: str) -> bool:
    return await task_status(sessions, task_id) in ("awaiting_approval", *queries.TERMINAL)


async def dry_run_parked(tmp_path, settings, sessions, embedded_bus, scripted_worker, task_id="dry"):
    scope = tmp_path / "service"
    seed(scope)
    before = tree(scope)
    await queue(sessions, embedded_bus, task_id, scope, dry_run=True)
    await run_worker_until(scripted_worker(SCRIPT), lambda: parked(sessions, task_id))
    async with sessions() as session:
        (approval,) = await queries.list_approvals(session, status="pending")
    return scope, before, approval


async def test_a_dry_run_leaves_the_scope_untouched_and_predicts_the_exact_change_set(
        tmp_path, settings, sessions, embedded_bus, scripted_worker):
    scope, before, approval = await dry_run_parked(tmp_path, settings, sessions, embedded_bus, scripted_worker)
    assert await task_status(sessions, "dry") == "awaiting_approval"
    assert tree(scope) == before
    change_set = approval.change_set
    assert approval.kind == "change_set" and change_set["apply"] == "files"
    assert change_set["files"] == [{"path": "app.ini", "change": "modified"}, {"path": "old.log", "change": "deleted"},
                                   {"path": "old.log.gz", "change": "added"},
                                   {"path": "reports/summary.txt", "change": "added"},
                                   {"path": "secret.env", "change": "modified"}]
    assert change_set["commands"] == ["gzip -n old.log && chmod 600 secret.env"]
    assert approval.diff == change_set["diff"] == (
        "--- a/app.ini\n+++ b/app.ini\n@@ -1,3 +1,3 @@\n [server]\n port = 8080\n-workers = 2\n+workers = 4\n"
        "--- a/old.log\n+++ /dev/null\n@@ -1 +0,0 @@\n-" + "x" * 1000 + "\n\\ No newline at end of file\n"
        "Binary or large file old.log.gz added\n"
        "--- /dev/null\n+++ b/reports/summary.txt\n@@ -0,0 +1 @@\n+3 errors\n"
        "mode change secret.env 0644 -> 0600\n")


async def test_applying_the_change_set_gives_the_tree_a_real_run_gives(
        tmp_path, settings, sessions, embedded_bus, scripted_worker, client):
    real = tmp_path / "real" / "service"
    seed(real)
    await queue(sessions, embedded_bus, "real", real, dry_run=False)
    await run_worker_until(scripted_worker(SCRIPT), lambda: finished(sessions, "real"))
    scope, _, approval = await dry_run_parked(tmp_path, settings, sessions, embedded_bus, scripted_worker)

    answer = await client.post(f"/api/approvals/{approval.id}/decision", json={"decision": "approve"})
    assert answer.status_code == 200
    await run_worker_until(scripted_worker([]), lambda: finished(sessions, "dry"))
    async with sessions() as session:
        task = await queries.get_task(session, task_id="dry")
    assert task.status == "succeeded" and task.result["applied"] is True
    assert tree(scope) == tree(real)
    assert (scope / "secret.env").stat().st_mode & 0o777 == 0o600
    assert not (settings.data_dir / "scratch" / "dry").exists()
    # The apply was snapshotted first: it can be rolled back like any action.
    async with sessions() as session:
        snapshot = await queries.get_snapshot(session, snapshot_id=task.result["snapshot"])
    assert snapshot.scope == str(scope.resolve()) and snapshot.task_id == "dry"


async def test_a_change_set_is_not_applied_over_changes_made_since_the_dry_run(
        tmp_path, settings, sessions, embedded_bus, scripted_worker, client):
    scope, _, approval = await dry_run_parked(tmp_path, settings, sessions, embedded_bus, scripted_worker)
    (scope / "app.ini").write_text("[server]\nport = 9090\nworkers = 2\n")   # someone edited it meanwhile
    edited = tree(scope)
    await client.post(f"/api/approvals/{approval.id}/decision", json={"decision": "approve"})
    await run_worker_until(scripted_worker([]), lambda: finished(sessions, "dry"))
    async with sessions() as session:
        task = await queries.get_task(session, task_id="dry")
    assert task.status == "failed" and "the scope changed since the dry run under app.ini" in task.error
    assert tree(scope) == edited


async def test_a_rejected_change_set_stays_in_the_task_and_nothing_is_applied(
        tmp_path, settings, sessions, embedded_bus, scripted_worker, client):
    scope, before, approval = await dry_run_parked(tmp_path, settings, sessions, embedded_bus, scripted_worker)
    await client.post(f"/api/approvals/{approval.id}/decision", json={"decision": "reject", "reason": "not today"})
    await run_worker_until(scripted_worker([]), lambda: finished(sessions, "dry"))
    async with sessions() as session:
        task = await queries.get_task(session, task_id="dry")
    assert task.result["applied"] is False and task.result["reason"] == "not today"
    assert "+workers = 4" in task.result["diff"]
    assert tree(scope) == before


async def test_dry_run_over_rest_and_its_task_says_so(client, sessions, tmp_path):
    answer = await client.post("/api/tasks", json={"goal": "tidy", "workspace": str(tmp_path), "dry_run": True})
    assert answer.status_code == 201
    task = (await client.get(f"/api/tasks/{answer.json()['id']}")).json()
    assert task["dry_run"] is True
