"""Rollback in the worker, on the real bus and store: a change that breaks the task's check
is undone at once; a task that fails is undone whole and ends rolled_back; a redelivered
task whose worker died mid-action has that action undone before it resumes."""

from __future__ import annotations

import json
from pathlib import Path

from hybrid_agent.bus.messages import TaskMessage
from hybrid_agent.rollback.journal import save
from hybrid_agent.rollback.snapshots import SnapshotStore
from hybrid_agent.store import queries
from tests.fakes import FakeScriptedLLM
from tests.worker_support import finished, run_worker_until
from tests.rollback.tree_support import tree_state


def call(tool: str, **args) -> list[str]:
    return [json.dumps({"tool": tool, "args": args})]


async def queue(sessions, bus, task_id: str, *, check_cmd: str | None = None, status: str = "queued",
                deliveries: int = 0) -> None:
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[], tasks=[{
            "id": task_id, "event_id": None, "goal": "set the port to 8080", "status": status, "workspace": None,
            "queue": "default", "requested_by": "test", "check_cmd": check_cmd, "deliveries": deliveries}])
    await bus.publish_tasks([TaskMessage(task_id=task_id)])


def workspace_with_config(settings, task_id: str) -> Path:
    workspace = settings.workspaces_dir / task_id
    workspace.mkdir(parents=True)
    (workspace / "app.conf").write_text("port=80\n")
    (workspace / "notes").mkdir()
    return workspace


async def test_a_change_that_breaks_the_check_is_rolled_back_end_to_end(make_worker, sessions, bus, settings):
    workspace = workspace_with_config(settings, "c1")
    before = tree_state(workspace)
    script = [call("shell", cmd="echo port=eighty > app.conf && touch notes/changed"),
              call("list_dir", path=".")]
    await queue(sessions, bus, "c1", check_cmd="grep -qx 'port=[0-9]*' app.conf")
    await run_worker_until(make_worker(FakeScriptedLLM(script), max_steps=2, rollback_failed_tasks=False),
                           lambda: finished(sessions, "c1"))
    assert tree_state(workspace) == before
    async with sessions() as session:
        steps = await queries.get_steps(session, task_id="c1")
        restores = await queries.list_restores(session, task_id="c1")
        snapshots = await queries.task_snapshots(session, task_id="c1")
    assert steps[0].rollback["reason"] == "check_failed" and steps[0].snapshot_id == snapshots[0].id
    assert [(r.reason, r.ok, r.snapshot_id, r.report["modified"], r.report["removed"]) for r in restores] == [
        ("check_failed", True, snapshots[0].id, 1, 1)]


async def test_a_failed_task_is_undone_whole_and_ends_rolled_back(make_worker, sessions, bus, settings):
    workspace = workspace_with_config(settings, "f1")
    before = tree_state(workspace)
    script = [call("write_file", path="app.conf", content="port=8080\n"), call("list_dir", path="."),
              call("shell", cmd="mkdir build && echo 1 > build/out"), call("list_dir", path="."),
              call("finish", summary="could not verify", success=False)]
    await queue(sessions, bus, "f1")
    await run_worker_until(make_worker(FakeScriptedLLM(script)), lambda: finished(sessions, "f1"))
    assert tree_state(workspace) == before
    async with sessions() as session:
        task = await queries.get_task(session, task_id="f1")
        restores = await queries.list_restores(session, task_id="f1")
        snapshots = await queries.task_snapshots(session, task_id="f1")
    assert task.status == "rolled_back" and task.error == "could not verify"
    assert [s.step for s in snapshots] == [1, 3]
    assert [(r.reason, r.snapshot_id) for r in restores] == [("task_failed", snapshots[0].id)]
    assert task.result["rollback"]["ok"] is True


async def test_a_redelivered_task_undoes_the_interrupted_action_before_resuming(make_worker, sessions, bus,
                                                                               settings):
    workspace = workspace_with_config(settings, "r1")
    before = tree_state(workspace)
    # The last worker journaled the snapshot of step 1, began the action, and died.
    store = SnapshotStore(settings.rollback_dir)
    snapshot = store.create(workspace, task_id="r1", step=1)
    async with sessions.begin() as session:
        await save(session, snapshot)
    (workspace / "app.conf").write_text("port=")
    (workspace / "half-written.tmp").write_text("partial")
    llm = FakeScriptedLLM([call("list_dir", path=".")])
    await queue(sessions, bus, "r1", status="running", deliveries=1)
    await run_worker_until(make_worker(llm, max_steps=1, rollback_failed_tasks=False), lambda: finished(sessions, "r1"))
    listing = llm.prompts[0][-1]["content"]
    assert "app.conf" in listing and "half-written.tmp" not in listing   # undone before the model looked
    assert tree_state(workspace) == before
    async with sessions() as session:
        restores = await queries.list_restores(session, task_id="r1")
    assert [(r.reason, r.ok) for r in restores] == [("redelivery", True)]
