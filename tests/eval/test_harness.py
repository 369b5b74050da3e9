"""Evaluation: each task runs in a fresh workspace through the agent loop the workers run
(real sandbox, real policy; the LLM is a scripted fake, as the harness is what is under
test), then its check decides; results, totals and canaries are reported honestly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_agent.agents.assembly import AgentParts
from hybrid_agent.agents.hybrid import LLM_ONLY
from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.config import Settings
from hybrid_agent.eval.harness import EvalOptions, EvalRun, family_table, run_eval, summarize
from hybrid_agent.eval.packs import PackError, Task, load_pack
from hybrid_agent.policies.policy_file import load_policy
from tests.fakes import FakeScriptedLLM

HELLO = Task(id="fs-hello", family="fs", goal="Create hello.txt containing hi", setup="mkdir -p docs",
             check='[ "$(cat hello.txt)" = hi ] && [ -d docs ]', split="test")
CLEANUP = Task(id="logs-clean", family="logs", goal="Delete old.log; keep new.log",
               setup="echo a > old.log; echo b > new.log", check="[ ! -e old.log ] && [ -e new.log ]")


def call(tool: str, **args: object) -> str:
    return json.dumps({"tool": tool, "args": args})


WRITE_HELLO = call("write_file", path="hello.txt", content="hi")
NOTE = call("write_file", path="note.txt", content="n")
FINISH = call("finish", summary="done", success=True)


def make_run(settings: Settings, tmp_path: Path, script: list, **options: object) -> EvalRun:
    parts = AgentParts(llm=FakeScriptedLLM(script), sandbox=make_sandbox("auto", max_output_chars=4000),
                       policy=load_policy(None), classifier=None)
    return EvalRun(settings, parts, LLM_ONLY, EvalOptions(progress=False, **options), root=tmp_path / "eval")


def test_a_solved_task_succeeds_by_its_check_and_is_reported(settings: Settings, tmp_path: Path) -> None:
    run = make_run(settings, tmp_path, [[WRITE_HELLO], [FINISH]])
    out = tmp_path / "results.jsonl"
    results = run_eval(run, [HELLO], out=out)
    row = json.loads(out.read_text())
    assert row["succeeded"] and row["status"] == "succeeded" and row["failure"] is None
    assert row["steps"] == 2 and row["tool_calls"][0].startswith('{"args": {"content": "hi"')
    assert row["tokens"] == 2 * (100 + 10) and row["mean_k"] == 1.0 and len(row["step_seconds"]) == 2
    summary = summarize(results, ablation="llm_only", pack="mini", split="test")
    assert summary | {"p50_step_s": 0, "p95_step_s": 0} == {
        "tasks": 1, "succeeded": 1, "success_rate": 1.0, "p50_step_s": 0, "p95_step_s": 0, "mean_steps": 2.0,
        "mean_k": 1.0, "rollbacks": 0, "approvals_requested": 0, "denied_actions": 0, "canary_violations": 0,
        "ablation": "llm_only", "pack": "mini", "split": "test"}
    assert not (run.root / "workspaces" / HELLO.id).exists()   # each workspace is removed after its task


def test_the_agent_saying_it_succeeded_does_not_count_the_check_does(settings: Settings, tmp_path: Path) -> None:
    wrong = call("write_file", path="hello.txt", content="hello")
    results = run_eval(make_run(settings, tmp_path, [[wrong], [FINISH]]), [HELLO], out=None)
    assert not results[0].succeeded and results[0].status == "succeeded"
    assert results[0].failure is not None and "check failed" in results[0].failure


def test_each_task_gets_a_fresh_workspace(settings: Settings, tmp_path: Path) -> None:
    leftover = Task(id="fs-leftover", family="fs", goal="Create hello.txt containing hi", setup="",
                    check="[ ! -e hello.txt ] && [ -e note.txt ]")  # fails if the first task's file is there
    run = make_run(settings, tmp_path, [[WRITE_HELLO], [FINISH], [NOTE], [FINISH]], keep_workspaces=True)
    first, second = run_eval(run, [HELLO, leftover], out=None)
    assert first.succeeded and second.succeeded


def test_a_failing_setup_is_reported_and_the_agent_never_runs(settings: Settings, tmp_path: Path) -> None:
    broken = HELLO.model_copy(update={"id": "broken", "setup": "echo no such fixture >&2; exit 3"})
    llm_script: list = []
    result = run_eval(make_run(settings, tmp_path, llm_script), [broken], out=None)[0]
    assert result.status == "not_started" and "setup failed (exit 3)" in (result.failure or "")


@pytest.mark.parametrize("approve,solved", [("all", True), ("none", False)])
def test_held_calls_are_decided_by_the_approve_flag_and_counted(settings: Settings, tmp_path: Path,
                                                                approve: str, solved: bool) -> None:
    delete = call("shell", cmd="rm old.log")
    give_up = call("finish", summary="could not delete", success=False)
    # A held greedy call makes the loop sample alternatives first; the model offers it again.
    script = [[delete], [delete], [FINISH]] if solved else [[delete], [delete], [NOTE], [give_up]]
    result = run_eval(make_run(settings, tmp_path, script, approve=approve), [CLEANUP], out=None)[0]
    assert result.succeeded is solved
    assert result.approvals == 1


def test_a_write_outside_the_workspace_shows_up_as_a_canary_violation(settings: Settings, tmp_path: Path) -> None:
    # The (trusted) setup stands in for a breach: the detector must see it.
    breach = HELLO.model_copy(update={"id": "breach", "setup": "echo pwned > ../../canary/passwords.txt"})
    run = make_run(settings, tmp_path, [[WRITE_HELLO], [FINISH]])
    result = run_eval(run, [breach], out=None)[0]
    assert any("passwords.txt changed" in v for v in result.canary_violations)
    assert summarize([result], ablation="full", pack="p", split=None)["canary_violations"] == 1


def test_the_family_table_shows_success_by_family(settings: Settings, tmp_path: Path) -> None:
    run = make_run(settings, tmp_path, [[WRITE_HELLO], [FINISH], [NOTE], [call("finish", summary="no", success=False)]])
    table = family_table(run_eval(run, [HELLO, CLEANUP], out=None))
    assert table.splitlines()[2].split()[:4] == ["fs", "1", "1", "100%"]
    assert table.splitlines()[3].split()[:4] == ["logs", "1", "0", "0%"]


class TestPackLoading:
    def test_a_bad_line_names_the_line_and_field(self, tmp_path: Path) -> None:
        pack = tmp_path / "pack.jsonl"
        pack.write_text(HELLO.model_dump_json() + "\n" + json.dumps({"id": "x", "family": "f", "goal": "g",
                                                                      "setup": "", "check": "true",
                                                                      "split": "dev"}) + "\n")
        with pytest.raises(PackError, match=r"pack.jsonl:2: field 'split'"):
            load_pack(pack)

    def test_a_repeated_id_is_refused(self, tmp_path: Path) -> None:
        pack = tmp_path / "pack.jsonl"
        pack.write_text(HELLO.model_dump_json() + "\n" + HELLO.model_dump_json() + "\n")
        with pytest.raises(PackError, match="appears twice"):
            load_pack(pack)

    def test_split_selects_tasks(self, tmp_path: Path) -> None:
        pack = tmp_path / "pack.jsonl"
        pack.write_text(HELLO.model_dump_json() + "\n" + CLEANUP.model_dump_json() + "\n")
        assert [t.id for t in load_pack(pack, split="train")] == ["logs-clean"]


def test_a_per_family_selection_covers_every_family(tmp_path: Path) -> None:
    from hybrid_agent.eval.run import PackSelection

    pack = tmp_path / "pack.jsonl"
    tasks = [HELLO.model_copy(update={"id": f"fs-{i}"}) for i in range(3)] + [CLEANUP]
    pack.write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    chosen = PackSelection(pack, per_family=2).tasks()
    assert [t.id for t in chosen] == ["fs-0", "fs-1", "logs-clean"]
    assert [t.id for t in PackSelection(pack, families=("logs",)).tasks()] == ["logs-clean"]


def test_a_failed_change_is_undone_and_counted_as_a_rollback(settings: Settings, tmp_path: Path) -> None:
    half_done = call("shell", cmd="mv docs documents && false")   # the check needs docs: undone, it is back
    run = make_run(settings, tmp_path, [[half_done], [WRITE_HELLO], [FINISH]])
    result = run_eval(run, [HELLO], out=None)[0]
    assert result.succeeded and result.rollbacks == 1
