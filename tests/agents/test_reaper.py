"""A running task whose worker vanished with its message (no heartbeat for
``task_stale_s``) goes back to the queue and is finished by another worker; a task whose
worker still beats is left alone; two reapers send a task back once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from hybrid_agent.store import queries
from hybrid_agent.store.tables import TaskRow, utcnow
from tests.agents.conftest import call
from tests.worker_support import finished, run_worker_until


async def running_task(sessions, task_id: str, workspace, *, silent_for_s: float) -> None:
    """A task a worker started, then went silent (its message is gone: nothing on TASKS)."""
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[], tasks=[{
            "id": task_id, "event_id": None, "goal": "write x", "status": "queued", "queue": "default",
            "requested_by": "ops", "workspace": str(workspace)}])
        await queries.start_task(session, task_id=task_id, isolation="rlimit", workspace=str(workspace))
        await session.execute(update(TaskRow).where(TaskRow.id == task_id)
                              .values(heartbeat_at=utcnow() - timedelta(seconds=silent_for_s)))


async def test_a_silent_running_task_is_sent_back_and_finished(sessions, embedded_bus, scripted_worker, tmp_path):
    await running_task(sessions, "orphan", tmp_path / "orphan", silent_for_s=3600)
    await running_task(sessions, "alive", tmp_path / "alive", silent_for_s=5)
    worker = scripted_worker([call("write_file", path="x", content="x"), call("finish", summary="ok", success=True)])
    assert await worker.reap() == 1
    await run_worker_until(worker, lambda: finished(sessions, "orphan"))
    async with sessions() as session:
        orphan = await queries.get_task(session, task_id="orphan")
        alive = await queries.get_task(session, task_id="alive")
        reaped = await queries.journal_of_kind(session, kind="task.reaped")
    assert orphan.status == "succeeded" and orphan.deliveries == 2
    assert alive.status == "running"
    assert [entry.task_id for entry in reaped] == ["orphan"]


async def test_two_reapers_send_a_task_back_once(sessions, embedded_bus, scripted_worker, tmp_path):
    await running_task(sessions, "orphan", tmp_path / "orphan", silent_for_s=3600)
    first, second = scripted_worker([]), scripted_worker([])
    assert await first.reap() + await second.reap() == 1
    info = await embedded_bus.js.stream_info("TASKS")
    assert info.state.messages == 1
