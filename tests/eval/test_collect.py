"""Trace collection: every candidate of a step is kept and labelled by running it in a
scratch copy of the workspace followed by the task's check; the files it writes load in
the trainers. The LLM is a scripted fake (the labelling is under test); the sandbox and
policy are real."""

from __future__ import annotations

import json
from pathlib import Path

from hybrid_agent.agents.assembly import AgentParts
from hybrid_agent.agents.hybrid import LLM_ONLY
from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.config import Settings
from hybrid_agent.eval.collect import CollectRun, TraceWriter
from hybrid_agent.eval.harness import EvalOptions, run_eval
from hybrid_agent.eval.packs import Task
from hybrid_agent.models.ebm.data import load_traces as load_ebm_traces
from hybrid_agent.models.hrm.data import load_traces as load_hrm_traces
from hybrid_agent.policies.policy_file import load_policy
from tests.fakes import FakeScriptedLLM

TASK = Task(id="fs-hello", family="fs", goal="Create hello.txt containing hi", setup="echo keep > keep.txt",
            check='[ "$(cat hello.txt)" = hi ] && [ -e keep.txt ]')
GOOD = json.dumps({"tool": "write_file", "args": {"path": "hello.txt", "content": "hi"}})
FAILS = json.dumps({"tool": "shell", "args": {"cmd": "cat missing.txt"}})
CLOSE = json.dumps({"tool": "write_file", "args": {"path": "hello.txt", "content": "hello"}})
FINISH = json.dumps({"tool": "finish", "args": {"summary": "done", "success": True}})


def collect(settings: Settings, tmp_path: Path, script: list) -> tuple[Path, list]:
    parts = AgentParts(llm=FakeScriptedLLM(script), sandbox=make_sandbox("auto", max_output_chars=4000),
                       policy=load_policy(None), classifier=None)
    out = tmp_path / "traces"
    writer = TraceWriter(out)
    run = CollectRun(settings.model_copy(update={"candidates": 3}), parts, LLM_ONLY, EvalOptions(progress=False),
                     root=tmp_path / "eval", scratch=tmp_path / "scratch")
    results = run_eval(run, [TASK], out=None, on_task=lambda t, r, _: writer.write_task(t, r, run.steps))
    writer.close()
    return out, results


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_candidates_are_labelled_by_running_them_in_scratch_copies(settings: Settings, tmp_path: Path) -> None:
    out, results = collect(settings, tmp_path, [[GOOD, FAILS, CLOSE], [FINISH]])
    assert results[0].succeeded
    first = rows(out / "ebm.jsonl")[0]
    by_text = {c["text"]: c for c in first["candidates"]}
    assert by_text[GOOD]["outcome"] == 1          # chosen, and the check passed after it
    assert by_text[FAILS]["outcome"] == 0         # its run failed (no such file)
    assert by_text[CLOSE]["outcome"] is None      # ran fine, but did not reach the goal
    perturbed = [c for c in first["candidates"] if c["kind"].startswith("perturbed:")]
    assert perturbed and all(c["outcome"] in (0, None) for c in perturbed)
    assert first["goal"] == TASK.goal


def test_the_real_workspace_sees_only_the_chosen_call(settings: Settings, tmp_path: Path) -> None:
    # CLOSE ran in a scratch copy; had it run in the workspace, hello.txt would say "hello".
    _, results = collect(settings, tmp_path, [[GOOD, CLOSE], [FINISH]])
    assert results[0].succeeded


def test_the_written_files_load_in_the_trainers(settings: Settings, tmp_path: Path) -> None:
    out, _ = collect(settings, tmp_path, [[GOOD, FAILS], [FINISH]])
    groups = load_ebm_traces(out / "ebm.jsonl")
    assert len(groups) == 2
    examples = load_hrm_traces(out / "hrm.jsonl")
    assert [e.next_tool for e in examples] == ["write_file", "finish"]
    assert not any(e.failed_soon for e in examples)
    sft = rows(out / "sft.jsonl")
    assert [row["completion"] for row in sft] == [json.dumps(json.loads(GOOD), separators=(",", ":")),
                                                  json.dumps(json.loads(FINISH), separators=(",", ":"))]
    assert sft[0]["messages"][0]["role"] == "system" and TASK.goal in sft[0]["messages"][-1]["content"]
    assert rows(out / "playbook.jsonl") == [{"goal": TASK.goal, "call": json.loads(GOOD)}]


def test_a_failed_task_marks_its_last_steps_as_failing_soon_and_teaches_no_sft(settings: Settings,
                                                                               tmp_path: Path) -> None:
    out, results = collect(settings, tmp_path, [[CLOSE], [json.dumps({"tool": "finish", "args": {
        "summary": "done", "success": True}})]])
    assert not results[0].succeeded
    assert all(e.failed_soon for e in load_hrm_traces(out / "hrm.jsonl"))
    assert (out / "sft.jsonl").read_text() == ""
