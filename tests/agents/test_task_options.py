"""What a rule sets for its tasks beyond the goal: a policy file of their own (a profile)
and budgets; a profile that cannot be read fails the task saying so."""

from __future__ import annotations

from pathlib import Path

from hybrid_agent.policies.policy_file import DEFAULT_POLICY
from hybrid_agent.store import queries
from tests.agents.conftest import call, queue_task
from tests.worker_support import finished, run_worker_until, task_status

import hybrid_agent.policies as policies


def strict_profile(tmp_path: Path) -> Path:
    """The default policy, plus: compressing files needs a person."""
    text = (Path(policies.__file__).parent / DEFAULT_POLICY).read_text()
    text = text.replace('version: "', 'version: "strict-', 1)
    text = text.replace("approve:\n", "approve:\n  - id: compress\n    risk: medium\n    reason: compresses files\n"
                        "    programs: [gzip]\n", 1)
    path = tmp_path / "strict.yaml"
    path.write_text(text)
    return path


async def test_a_tasks_policy_profile_is_the_one_that_decides(tmp_path, sessions, embedded_bus, scripted_worker):
    workspace = tmp_path / "logs"
    workspace.mkdir()
    (workspace / "a.log").write_text("x" * 100)
    await queue_task(sessions, embedded_bus, "strict", workspace=str(workspace), policy=str(strict_profile(tmp_path)))
    gzip = call("shell", cmd="gzip -n a.log")
    await run_worker_until(scripted_worker([gzip] * 6),   # held, then offered again after being told
                           lambda: _in(sessions, "strict", ("awaiting_approval", *queries.TERMINAL)))
    async with sessions() as session:
        (approval,) = await queries.list_approvals(session, status="pending")
        journal = await queries.journal_for_task(session, task_id="strict", event_id=None)
    assert approval.reasons == ["compresses files: gzip -n a.log"]
    assert journal[0].detail["policy"].startswith("strict-")
    assert (workspace / "a.log").exists()


async def test_budgets_of_a_task_bound_its_steps(tmp_path, sessions, embedded_bus, scripted_worker):
    await queue_task(sessions, embedded_bus, "short", workspace=str(tmp_path / "w"), budgets={"max_steps": 1})
    script = [call("write_file", path="a.txt", content="a"), call("finish", summary="done", success=True)]
    await run_worker_until(scripted_worker(script), lambda: finished(sessions, "short"))
    async with sessions() as session:
        task = await queries.get_task(session, task_id="short")
    assert task.error == "step budget spent (1 steps) before the goal was reached"


async def test_a_profile_that_cannot_be_read_fails_the_task_naming_it(tmp_path, sessions, embedded_bus,
                                                                      scripted_worker):
    missing = tmp_path / "gone.yaml"
    await queue_task(sessions, embedded_bus, "broken", policy=str(missing))
    await run_worker_until(scripted_worker([]), lambda: finished(sessions, "broken"))
    async with sessions() as session:
        task = await queries.get_task(session, task_id="broken")
    assert task.status == "failed" and task.error.startswith(f"cannot read policy {missing}")


async def _in(sessions, task_id: str, statuses) -> bool:
    return await task_status(sessions, task_id) in statuses
