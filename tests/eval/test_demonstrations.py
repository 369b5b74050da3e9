"""Demonstration traces: reference solutions played through the real loop become SFT
examples with the loop's own prompts; a solution that is no valid call is left out, saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_agent.config import Settings
from hybrid_agent.eval.demonstrations import DemonstrationLLM, Demonstrations, solution_call
from hybrid_agent.eval.harness import EvalOptions
from hybrid_agent.eval.packs import Task
from hybrid_agent.eval.run import PackSelection, collect_demonstrations
from hybrid_agent.policies.tool_schema import InvalidToolCall, call_schema

CODE_FIX = """python3 - <<'PY'
from pathlib import Path
path = Path('invoice.py')
source = path.read_text()
buggy, fixed = 'net = a + b', 'net = a - b'
assert source.count(buggy) == 1, 'buggy snippet not found'
path.write_text(source.replace(buggy, fixed))
PY
"""
TASKS = [Task(id="os-demo-001", family="demo", goal="Create hello.txt containing hi", setup="echo keep > keep.txt",
              check='[ "$(cat hello.txt)" = hi ] && [ -e keep.txt ]', split="train"),
         Task(id="os-demo-002", family="demo", goal="Make a folder named reports", setup="true",
              check="[ -d reports ]", split="train")]
SOLUTIONS = {"os-demo-001": "printf hi > hello.txt", "os-demo-002": "mkdir -p reports"}


def test_a_shell_solution_is_one_shell_call():
    assert solution_call("mkdir -p reports\n") == {"tool": "shell", "args": {"cmd": "mkdir -p reports"}}


def test_a_python_replacement_is_the_edit_it_amounts_to():
    assert solution_call(CODE_FIX) == {"tool": "edit", "args": {"path": "invoice.py", "old": "net = a + b",
                                                                "new": "net = a - b"}}


def test_a_script_longer_than_a_command_may_be_is_no_call():
    with pytest.raises(InvalidToolCall, match="at most 200 characters"):
        solution_call("echo " + "x" * 300)


def test_the_demonstrator_plays_the_goals_solution_then_finishes(tmp_path: Path):
    solutions = tmp_path / "solutions.jsonl"
    solutions.write_text("".join(json.dumps({"id": i, "solution": s}) + "\n" for i, s in SOLUTIONS.items()))
    demonstrator = DemonstrationLLM(Demonstrations.load(solutions, TASKS))
    prompt = [{"role": "system", "content": "tools"}, {"role": "user", "content": "Goal: Make a folder named reports"}]
    no_finish = call_schema(frozenset({"shell", "list_dir"}))
    assert demonstrator.propose(prompt, no_finish, 1).candidates[0].parsed == {"tool": "shell",
                                                                              "args": {"cmd": "mkdir -p reports"}}
    assert demonstrator.propose(prompt, call_schema(), 1).candidates[0].parsed["tool"] == "finish"


def test_demonstrations_through_the_loop_become_sft_examples_with_its_prompts(settings: Settings, tmp_path: Path):
    pack = tmp_path / "pack.jsonl"
    pack.write_text("".join(json.dumps({"id": t.id, "family": t.family, "goal": t.goal, "setup": t.setup,
                                        "check": t.check, "split": t.split}) + "\n" for t in TASKS))
    solutions = tmp_path / "solutions.jsonl"
    solutions.write_text(json.dumps({"id": "os-demo-001", "solution": "printf hi > hello.txt"}) + "\n"
                         + json.dumps({"id": "os-demo-002", "solution": "echo " + "x" * 300}) + "\n")
    out = tmp_path / "demos"
    summary = collect_demonstrations(settings, PackSelection(pack, split="train"), EvalOptions(progress=False,
                                     approve="all"), solutions=solutions, out_dir=out)
    assert summary["demonstrated"] == 1 and "at most 200 characters" in summary["not_demonstrated"]["os-demo-002"]
    assert summary["succeeded"] == 1   # the demonstrated one; the other only looked and failed its check
    examples = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    assert [json.loads(e["completion"])["tool"] for e in examples] == ["shell", "finish"]
    assert all("Create hello.txt containing hi" in e["messages"][-1]["content"] for e in examples)
