"""Cancelling a task over REST: one not running yet ends cancelled at once with its changes
undone; a running one is stopped by its worker (told over the bus) before its next step,
and its changes are undone; an ended one cannot be cancelled."""

from __future__ import annotations

import asyncio
import threading

from hybrid_agent.rollback.journal import save
from hybrid_agent.rollback.snapshots import SnapshotStore
from hybrid_agent.store import queries
from tests.fakes import FakeScriptedLLM
from tests.worker_support import finished, run_worker_until
from tests.rollback.test_worker_rollback import call, queue, workspace_with_config
from tests.rollback.tree_support import tree_state


async def test_a_parked_task_is_cancelled_at_once_and_its_changes_undone(api_on_bus, settings, sessions, bus):
    workspace = workspace_with_config(settings, "p1")
    before = tree_state(workspace)
    await queue(sessions, bus, "p1")
    snapshot = SnapshotStore(settings.rollback_dir).create(workspace, task_id="p1", step=1)
    async with sessions.begin() as session:
        await save(session, snapshot)
        await queries.start_task(session, task_id="p1", isolation="rlimit", workspace=str(workspace))
        await queries.await_approval(session, task_id="p1", pending={"call": {}})
    (workspace / "app.conf").write_text("port=8080\n")   # step 1 ran before the task was parked

    response = await api_on_bus.post("/api/tasks/p1/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled" and response.json()["rollback"]["ok"]
    assert tree_state(workspace) == before
    task = (await api_on_bus.get("/api/tasks/p1")).json()
    assert task["status"] == "cancelled" and task["result"]["rollback"]["snapshot"] == snapshot.id
    again = await api_on_bus.post("/api/tasks/p1/cancel")
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["detail"]
    assert (await api_on_bus.post("/api/tasks/nope/cancel")).status_code == 404


class PausingLLM(FakeScriptedLLM):
    """Answers its script, but waits at its second proposal until the test lets it go on."""

    def __init__(self, script) -> None:
        super().__init__(script)
        self.at_second = threading.Event()
        self.go_on = threading.Event()

    def propose(self, messages, schema, k, *, exclude=()):
        if len(self.prompts) == 1:
            self.at_second.set()
            self.go_on.wait(timeout=60)
        return super().propose(messages, schema, k)


async def test_a_running_task_is_stopped_by_its_worker_and_undone(api_on_bus, make_worker, settings, sessions, bus):
    workspace = workspace_with_config(settings, "c9")
    before = tree_state(workspace)
    llm = PausingLLM([call("write_file", path="app.conf", content="port=1\n"), call("list_dir", path="."),
                      call("write_file", path="extra", content="x")])
    worker = make_worker(llm, max_steps=4)
    await queue(sessions, bus, "c9")

    async def cancel_when_paused() -> None:
        while not llm.at_second.is_set():
            await asyncio.sleep(0.02)
        response = await api_on_bus.post("/api/tasks/c9/cancel")
        assert response.status_code == 202 and response.json()["status"] == "running"
        while "c9" not in worker.cancel_requests:   # the request came over the bus
            await asyncio.sleep(0.02)
        llm.go_on.set()

    canceller = asyncio.create_task(cancel_when_paused())
    await run_worker_until(worker, lambda: finished(sessions, "c9"))
    await canceller
    assert tree_state(workspace) == before
    async with sessions() as session:
        task = await queries.get_task(session, task_id="c9")
        steps = await queries.get_steps(session, task_id="c9")
        restores = await queries.list_restores(session, task_id="c9")
    assert task.status == "cancelled" and len(steps) == 2   # it stopped before its third step
    assert [r.reason for r in restores] == ["task_cancelled"]
