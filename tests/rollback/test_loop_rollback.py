"""The agent loop snapshots before every state-changing call and undoes one that fails or
breaks the task's check; a call that succeeds registers the undo of its effects outside
files. Driven by a scripted fake LLM (the model is not what these tests are about)."""

from __future__ import annotations

import json
from pathlib import Path

from hybrid_agent.agents.loop import AgentLoop, Limits, StepRecord
from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.tools import ToolRunner
from hybrid_agent.agents.assembly import command_runner
from hybrid_agent.policies.engine import PolicyEngine
from hybrid_agent.policies.policy_file import load_policy
from hybrid_agent.rollback.compensations import Compensation
from hybrid_agent.rollback.errors import RollbackError
from hybrid_agent.rollback.snapshots import Snapshot, SnapshotStore
from hybrid_agent.rollback.task import Restore, RollbackRecord, TaskRollback
from tests.fakes import FakeScriptedLLM
from tests.rollback.tree_support import tree_state


def call(tool: str, **args) -> str:
    return json.dumps({"tool": tool, "args": args})


def run_loop(workspace: Path, store: SnapshotStore, script, *, check_cmd: str | None = None,
             max_steps: int = 4, approve: bool = False) -> tuple[list[StepRecord], list[RollbackRecord]]:
    runner = ToolRunner(workspace, make_sandbox("rlimit", max_output_chars=2000), timeout_s=10, max_output_chars=2000)
    records: list[RollbackRecord] = []
    rollback = TaskRollback(store, scope=workspace, task_id="t1", journal=records.append, run=command_runner(runner))
    steps: list[StepRecord] = []
    loop = AgentLoop(llm=FakeScriptedLLM(script), runner=runner, policy=PolicyEngine(load_policy(), scopes=[workspace]),
                     limits=Limits(max_steps=max_steps, max_seconds=60), journal=steps.append, rollback=rollback,
                     check_cmd=check_cmd, approver=(lambda call, decision: True) if approve else None)
    loop.run("keep the config valid", workspace)
    return steps, records


def test_every_state_changing_call_is_snapshotted_first_and_journaled(scope: Path, store: SnapshotStore) -> None:
    steps, records = run_loop(scope, store, [[call("list_dir", path=".")], [call("write_file", path="a", content="1")],
                                             [call("finish", summary="done", success=True)]])
    snapshots = [r for r in records if isinstance(r, Snapshot)]
    assert [s.step for s in snapshots] == [2]
    assert [s.snapshot_id for s in steps] == [None, snapshots[0].id, None]
    assert "a" not in store.manifest(snapshots[0].manifest).entries   # taken before the write


def test_a_failing_command_is_undone(scope: Path, store: SnapshotStore) -> None:
    (scope / "app.conf").write_text("port=80\n")
    before = tree_state(scope)
    steps, records = run_loop(scope, store, [[call("shell", cmd="echo port=81 > app.conf && mkdir logs && false")]],
                              max_steps=1)
    assert tree_state(scope) == before
    assert steps[0].rollback == {"reason": "action_failed", "ok": True, "summary": steps[0].rollback["summary"]}
    assert "undone" in steps[0].observation
    restores = [r for r in records if isinstance(r, Restore)]
    assert [(r.reason, r.ok, r.report["modified"], r.report["removed"]) for r in restores] == [
        ("action_failed", True, 1, 1)]


def test_a_change_that_breaks_the_check_is_undone_and_a_good_one_kept(scope: Path, store: SnapshotStore) -> None:
    (scope / "app.conf").write_text("port=80\n")
    check = "grep -q '^port=[0-9]*$' app.conf"
    steps, _ = run_loop(scope, store, [[call("write_file", path="app.conf", content="port=eighty\n")],
                                       [call("write_file", path="app.conf", content="port=8080\n")],
                                       [call("finish", summary="done", success=True)]], check_cmd=check)
    assert steps[0].rollback["reason"] == "check_failed" and not steps[0].ok
    assert "check failed after this call" in steps[0].observation
    assert steps[1].ok and steps[1].rollback is None
    assert (scope / "app.conf").read_text() == "port=8080\n"


def test_a_failing_test_run_is_not_undone(scope: Path, store: SnapshotStore) -> None:
    steps, records = run_loop(scope, store, [[call("run_tests", cmd="touch .cache-file; exit 1")]], max_steps=1)
    assert steps[0].snapshot_id is not None and steps[0].rollback is None
    assert (scope / ".cache-file").exists()
    assert not any(isinstance(r, Restore) for r in records)


def test_a_successful_call_with_effects_outside_files_registers_its_undo(scope: Path, store: SnapshotStore,
                                                                         tmp_path: Path) -> None:
    # `systemctl` here is a script on PATH that logs its arguments: the real one is not what this is about.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/systemctl.log\n")
    fake.chmod(0o755)
    cmd = f"PATH={bin_dir}:$PATH; systemctl stop nginx"
    check = f"test ! -e {tmp_path}/systemctl.log"   # breaks once the service was touched
    # Held calls make the loop sample alternatives first: the script offers the same one again.
    steps, records = run_loop(scope, store, [[call("shell", cmd=cmd)], [call("shell", cmd=cmd)]], check_cmd=check,
                              max_steps=1, approve=True)
    assert steps[0].decision == "approved"   # the policy holds systemctl for a human
    compensations = [r for r in records if isinstance(r, Compensation)]
    assert [(c.command, c.step) for c in compensations] == [("systemctl start nginx", 1)]
    restore = next(r for r in records if isinstance(r, Restore))
    assert restore.reason == "check_failed"
    assert [c["command"] for c in restore.report["compensations"]] == ["systemctl start nginx"]


def test_a_call_whose_snapshot_fails_does_not_run(scope: Path, store: SnapshotStore, tmp_path: Path) -> None:
    class FakeFullDiskStore(SnapshotStore):   # a disk that refuses the snapshot; the store is not what this is about
        def create(self, scope, **kwargs):
            raise RollbackError(f"cannot snapshot {scope}: [Errno 28] No space left on device")

    steps, _ = run_loop(scope, FakeFullDiskStore(tmp_path / "broken"), [[call("write_file", path="a", content="1")]],
                        max_steps=1)
    assert not (scope / "a").exists()
    assert not steps[0].ok and "not run: cannot snapshot" in steps[0].observation
