"""The worker on the real bus and store: a task runs and is acked once; a duplicate
delivery of a finished task does nothing; infrastructure failures are retried and then
dead-lettered with the task marked failed."""

from __future__ import annotations

import json

from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.messages import TaskMessage
from hybrid_agent.store import queries
from hybrid_agent.models.llm.base import LLMError
from hybrid_agent.policies.policy_file import load_policy
from tests.fakes import FakeScriptedLLM
from tests.worker_support import finished, run_worker_until, task_status


def script_writing(path: str) -> list[list[str]]:
    return [[json.dumps({"tool": "write_file", "args": {"path": path, "content": "x"}})],
            [json.dumps({"tool": "finish", "args": {"summary": "done", "success": True}})]]


async def queue_task(sessions, bus: Bus, task_id: str, workspace: str | None = None) -> None:
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[], tasks=[{
            "id": task_id, "event_id": None, "goal": "write x", "status": "queued", "workspace": workspace,
            "queue": "default", "requested_by": "test"}])
    await bus.publish_tasks([TaskMessage(task_id=task_id)])


async def test_a_task_runs_in_a_fresh_workspace_and_is_journaled(make_worker, sessions, bus, settings):
    await queue_task(sessions, bus, "t1")
    worker = make_worker(FakeScriptedLLM(script_writing("out.txt")))
    await run_worker_until(worker, lambda: finished(sessions, "t1"))
    async with sessions() as session:
        task = await queries.get_task(session, task_id="t1")
        steps = await queries.get_steps(session, task_id="t1")
        journal = await queries.journal_for_task(session, task_id="t1", event_id=None)
    assert task.status == "succeeded" and task.result == {"summary": "done", "success": True}
    assert (settings.workspaces_dir / "t1" / "out.txt").read_text() == "x"
    assert [s.n for s in steps] == [1, 2]
    assert [j.kind for j in journal] == ["task.delivered", "task.finished"]
    assert journal[0].detail["isolation"] == "rlimit" and journal[0].detail["llm"] == "fake-scripted"
    info = await bus.js.consumer_info("TASKS", "workers-default-normal")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_model_failure_is_journaled_as_a_step(make_worker, sessions, bus):
    await queue_task(sessions, bus, "t5")
    llm = FakeScriptedLLM([LLMError("backend timed out"), LLMError("still down"), *script_writing("a.txt")])
    await run_worker_until(make_worker(llm), lambda: finished(sessions, "t5"))
    async with sessions() as session:
        steps = await queries.get_steps(session, task_id="t5")
        task = await queries.get_task(session, task_id="t5")
    assert "backend timed out" in steps[0].observation and steps[0].candidates[0]["logprob"] is None
    assert task.status == "succeeded"


async def test_a_duplicate_delivery_of_a_finished_task_does_nothing(make_worker, sessions, bus):
    await queue_task(sessions, bus, "t2")
    async with sessions.begin() as session:
        await queries.finish_task(session, task_id="t2", status="succeeded", result={"summary": "s"}, error=None)
    llm = FakeScriptedLLM([])
    await run_worker_until(make_worker(llm), lambda: _journaled(sessions, "t2", "task.duplicate_delivery"))
    assert llm.schemas == []  # the model was never asked


async def _journaled(sessions, task_id: str, kind: str) -> bool:
    async with sessions() as session:
        return any(j.kind == kind for j in await queries.journal_for_task(session, task_id=task_id, event_id=None))


async def test_infrastructure_failures_are_retried_then_dead_lettered(make_worker, sessions, bus, monkeypatch):
    await queue_task(sessions, bus, "t3")
    worker = make_worker(FakeScriptedLLM([]), max_deliver=2, nak_delay_s=0.1)
    attempts = []

    async def database_down(message, delivery):
        attempts.append(delivery.count)
        raise ConnectionError("database is down")

    monkeypatch.setattr(worker, "run_task", database_down)
    await run_worker_until(worker, lambda: finished(sessions, "t3"))
    assert attempts == [1, 2]
    async with sessions() as session:
        task = await queries.get_task(session, task_id="t3")
    assert task.status == "failed" and "dead-lettered after 2 deliveries" in task.error
    dead = await bus.js.get_last_msg("DEAD", "ha.dead.tasks.default")
    assert TaskMessage.model_validate_json(dead.data).task_id == "t3"
    assert "database is down" in dead.headers["HA-Reason"]


async def test_a_workspace_outside_the_roots_fails_the_task(make_worker, sessions, bus):
    await queue_task(sessions, bus, "t4", workspace="/etc")
    await run_worker_until(make_worker(FakeScriptedLLM([])), lambda: finished(sessions, "t4"))
    async with sessions() as session:
        task = await queries.get_task(session, task_id="t4")
    assert task.status == "failed" and "not strictly below an allowed root" in task.error


async def test_policy_decisions_are_journaled_and_a_held_call_parks_the_task(make_worker, sessions, bus, settings):
    workspace = settings.workspaces_dir / "t7"
    workspace.mkdir(parents=True)
    (workspace / "keep.txt").write_text("precious")
    rm = json.dumps({"tool": "shell", "args": {"cmd": "rm keep.txt"}})
    escape = json.dumps({"tool": "shell", "args": {"cmd": "cp keep.txt /etc/"}})
    await queue_task(sessions, bus, "t7")
    await run_worker_until(make_worker(FakeScriptedLLM([[escape], [rm], [rm], [rm]])),
                           lambda: _status_is(sessions, "t7", "awaiting_approval"))
    async with sessions() as session:
        task = await queries.get_task(session, task_id="t7")
        steps = await queries.get_steps(session, task_id="t7")
        journal = await queries.journal_for_task(session, task_id="t7", event_id=None)
    assert (workspace / "keep.txt").read_text() == "precious"
    assert task.result["pending"]["call"] == {"tool": "shell", "args": {"cmd": "rm keep.txt"}}
    assert task.result["pending"]["decision"]["rules"] == ["delete"]
    assert [s.decision for s in steps] == ["approve", "approve"] and steps[0].policy["rules"] == ["delete"]
    kinds = [j.kind for j in journal]
    assert kinds[0] == "task.delivered" and kinds[1] == "policy.deny" and kinds[-1] == "approval.requested"
    assert kinds.count("policy.approve") == 3 and journal[0].detail["policy"] == load_policy().version
    denied = journal[1].detail
    assert denied["policy_version"] and "/etc/" in denied["call"] and denied["reasons"]


async def _status_is(sessions, task_id: str, status: str) -> bool:
    return await task_status(sessions, task_id) == status


async def test_an_llm_only_worker_starts_with_the_default_experts_configured(make_worker, sessions, bus):
    # `hybrid-agent up --ablation llm_only` with HA_EXPERTS at its default: the experts are not built.
    await queue_task(sessions, bus, "t7")
    worker = make_worker(FakeScriptedLLM(script_writing("a.txt")), experts=["code_edit", "playbook"])
    await run_worker_until(worker, lambda: finished(sessions, "t7"))
    assert await task_status(sessions, "t7") == "succeeded" and worker.hybrid.experts == ()
