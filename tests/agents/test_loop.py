"""The agent loop's stages, driven by a scripted fake LLM (the model is not what these tests
are about): finish is held back until something changed, failed or completed calls are not
repeated, budgets end the task, and every step is journaled with its candidates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_agent.agents.loop import (AgentLoop, AgentState, Interrupted, LimitsExceeded, Limits, NeedsApproval,
                                      StepRecord, Submitted, call_key)
from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.tools import ToolRunner
from hybrid_agent.models.llm.base import LLMError
from hybrid_agent.policies.engine import PolicyEngine
from hybrid_agent.policies.policy_file import load_policy
from tests.fakes import FakeScriptedLLM


def policy_for(workspace: Path) -> PolicyEngine:
    return PolicyEngine(load_policy(), scopes=[workspace])


def call(tool: str, **args) -> str:
    return json.dumps({"tool": tool, "args": args})


def tools_in(schema: dict) -> set[str]:
    variants = schema.get("anyOf", [schema])
    return {v["properties"]["tool"]["const"] for v in variants}


def run(tmp_path: Path, script, *, max_steps: int = 5,
        max_k: int = 8) -> tuple[object, list[StepRecord], FakeScriptedLLM]:
    llm = FakeScriptedLLM(script)
    runner = ToolRunner(tmp_path, make_sandbox("rlimit", max_output_chars=2000), timeout_s=5, max_output_chars=2000)
    steps: list[StepRecord] = []
    loop = AgentLoop(llm=llm, runner=runner, policy=policy_for(tmp_path),
                     limits=Limits(max_steps=max_steps, max_seconds=60, max_k=max_k), journal=steps.append)
    return loop.run("make it so", tmp_path), steps, llm


def test_a_written_file_then_finish_succeeds(tmp_path):
    exit_, steps, llm = run(tmp_path, [[call("write_file", path="a.txt", content="hi")],
                                       [call("finish", summary="wrote a.txt", success=True)]])
    assert isinstance(exit_, Submitted) and exit_.status == "succeeded"
    assert (tmp_path / "a.txt").read_text() == "hi"
    assert [s.tool_call["tool"] for s in steps] == ["write_file", "finish"]
    assert steps[0].candidates[0]["chosen"] and steps[0].prompt_tokens == 100


def test_finish_is_not_offered_before_anything_changed(tmp_path):
    _, _, llm = run(tmp_path, [[call("list_dir", path=".")], [call("shell", cmd="touch x")],
                               [call("finish", summary="done", success=True)]])
    assert "finish" not in tools_in(llm.schemas[0]) and "finish" not in tools_in(llm.schemas[1])
    assert "finish" in tools_in(llm.schemas[2])


def test_a_failed_call_is_not_repeated_and_alternatives_are_sampled(tmp_path):
    failing = call("shell", cmd="false")
    exit_, steps, llm = run(tmp_path, [[failing], [failing], [failing, call("shell", cmd="touch ok")],
                                       [call("finish", summary="done", success=True)]])
    assert [s.tool_call["args"]["cmd"] for s in steps[:2]] == ["false", "touch ok"]
    assert steps[1].candidates[0]["error"] == "repeats a call that failed"
    assert llm.ks[:3] == [1, 1, 4] and llm.excluded[2] == []
    assert exit_.status == "succeeded"


def test_where_k_is_capped_at_one_the_llm_is_asked_for_its_next_best_call_instead(tmp_path):
    failing = call("shell", cmd="false")
    exit_, steps, llm = run(tmp_path, [[failing], [failing], [call("shell", cmd="touch ok")],
                                       [call("finish", summary="done", success=True)]], max_k=1)
    assert [s.tool_call["args"]["cmd"] for s in steps[:2]] == ["false", "touch ok"]
    assert llm.ks[:3] == [1, 1, 1]
    assert llm.excluded[:3] == [[], [], [failing]]   # the unusable greedy call, by its text
    assert exit_.status == "succeeded"


def test_right_after_a_change_the_model_may_only_look_or_finish(tmp_path):
    _, _, llm = run(tmp_path, [[call("shell", cmd="touch x")], [call("list_dir", path=".")],
                               [call("shell", cmd="touch y")], [call("finish", summary="done", success=True)]])
    assert tools_in(llm.schemas[1]) == {"finish", "read_file", "list_dir"}
    assert "shell" in tools_in(llm.schemas[2])


def test_redoing_a_completed_action_leads_to_finish(tmp_path):
    write = call("write_file", path="a.txt", content="hi")
    exit_, steps, llm = run(tmp_path, [[write], [call("list_dir", path=".")], [write], [write],
                                       [call("finish", summary="done", success=True)]])
    assert tools_in(llm.schemas[-1]) == {"finish"}
    assert steps[2].tool_call is None and steps[2].decision == "none"
    assert exit_.status == "succeeded"


def test_invalid_output_is_journaled_and_not_run(tmp_path):
    exit_, steps, _ = run(tmp_path, [["{not json"], ["{not json", call("nosuchtool", x=1)],
                                     [call("write_file", path="../escape", content="x")],
                                     [call("shell", cmd="touch b")], [call("finish", summary="s", success=True)]])
    assert steps[0].tool_call is None and not steps[0].ok and "not JSON" in steps[0].observation
    assert len(steps[0].candidates) == 3 and "unknown or disallowed tool" in steps[0].candidates[2]["error"]
    assert steps[1].candidates[0]["policy"]["decision"] == "deny"      # writing outside the scope
    assert steps[1].tool_call == {"tool": "shell", "args": {"cmd": "touch b"}}
    assert not (tmp_path.parent / "escape").exists()
    assert exit_.status == "succeeded"


def test_the_step_budget_ends_the_task(tmp_path):
    script = [[call("shell", cmd="echo 0")], [call("list_dir", path=".")], [call("shell", cmd="echo 1")]]
    exit_, steps, _ = run(tmp_path, script, max_steps=3)
    assert isinstance(exit_, LimitsExceeded) and exit_.status == "failed" and len(steps) == 3
    assert "step budget" in exit_.summary


def test_a_model_error_becomes_an_observation(tmp_path):
    exit_, steps, _ = run(tmp_path, [LLMError("backend timed out"), LLMError("still down"),
                                     [call("shell", cmd="touch c")], [call("finish", summary="s", success=True)]])
    assert "backend timed out" in steps[0].observation and not steps[0].ok
    assert exit_.status == "succeeded"


@pytest.mark.parametrize("success, status", [(True, "succeeded"), (False, "failed")])
def test_the_model_says_whether_it_succeeded(tmp_path, success, status):
    exit_, _, _ = run(tmp_path, [[call("shell", cmd="true")], [call("finish", summary="s", success=success)]])
    assert exit_.status == status


def test_a_stopping_worker_hands_the_task_back_between_steps(tmp_path):
    llm = FakeScriptedLLM([[call("shell", cmd="true")]])
    runner = ToolRunner(tmp_path, make_sandbox("rlimit", max_output_chars=100), timeout_s=5, max_output_chars=100)
    stops = iter([False, True])
    loop = AgentLoop(llm=llm, runner=runner, policy=policy_for(tmp_path), limits=Limits(max_steps=5, max_seconds=60),
                     journal=lambda r: None,
                     stopping=lambda: next(stops))
    exit_ = loop.run("g", tmp_path)
    assert isinstance(exit_, Interrupted) and exit_.status == "queued" and len(llm.ks) == 1


def test_the_time_budget_ends_the_task(tmp_path):
    ticks = iter(range(0, 1000, 50))  # a fake clock: every reading is 50 s later
    llm = FakeScriptedLLM([[call("shell", cmd="true")], [call("list_dir", path=".")]] * 5)
    runner = ToolRunner(tmp_path, make_sandbox("rlimit", max_output_chars=100), timeout_s=5, max_output_chars=100)
    loop = AgentLoop(llm=llm, runner=runner, policy=policy_for(tmp_path), limits=Limits(max_steps=50, max_seconds=300),
                     journal=lambda r: None,
                     clock=lambda: next(ticks))
    exit_ = loop.run("g", tmp_path)
    assert isinstance(exit_, LimitsExceeded) and "time budget" in exit_.summary


def test_a_denied_call_never_runs_and_the_model_is_told_why(tmp_path):
    exit_, steps, llm = run(tmp_path, [[call("shell", cmd="echo pwned > /etc/motd_ha_test")],
                                       [call("shell", cmd="echo fine > motd")],
                                       [call("finish", summary="done", success=True)]])
    assert not Path("/etc/motd_ha_test").exists()
    first = steps[0].candidates[0]
    assert first["policy"]["decision"] == "deny" and first["error"].startswith("policy: denied")
    assert first["policy"]["policy_version"] == load_policy().version
    assert steps[0].tool_call["args"]["cmd"] == "echo fine > motd"     # resampled, then allowed
    assert steps[0].policy["decision"] == "allow"
    assert exit_.status == "succeeded"


def test_a_call_that_needs_approval_is_explained_once_then_parks_the_task_unrun(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    rm = call("shell", cmd="rm keep.txt")
    exit_, steps, llm = run(tmp_path, [[rm], [rm], [rm], [rm]])
    assert isinstance(exit_, NeedsApproval) and exit_.status == "awaiting_approval"
    assert (tmp_path / "keep.txt").read_text() == "precious"
    assert exit_.call.args["cmd"] == "rm keep.txt" and exit_.decision.rules == ("delete",)
    assert [s.decision for s in steps] == ["approve", "approve"]
    assert "held for approval" in steps[0].observation
    assert "needs a human's approval" in llm.prompts[2][-1]["content"]     # the model was told


def test_after_a_hold_the_model_may_reach_the_goal_another_way(tmp_path):
    (tmp_path / "report.txt").write_text("r")
    rm = call("shell", cmd="rm -r archive report.txt")
    exit_, steps, _ = run(tmp_path, [[rm], [rm], [call("shell", cmd="mkdir -p archive && mv report.txt archive/")],
                                     [call("finish", summary="done", success=True)]])
    assert [s.decision for s in steps] == ["approve", "allow", "allow"]
    assert (tmp_path / "archive" / "report.txt").exists() and exit_.status == "succeeded"


def test_an_allowed_alternative_is_preferred_to_one_that_needs_approval(tmp_path):
    (tmp_path / "old.log").write_text("x")
    exit_, steps, _ = run(tmp_path, [[call("shell", cmd="rm old.log")],
                                     [call("shell", cmd="rm old.log"), call("shell", cmd="gzip old.log")],
                                     [call("finish", summary="done", success=True)]])
    assert steps[0].tool_call["args"]["cmd"] == "gzip old.log" and steps[0].decision == "allow"
    assert (tmp_path / "old.log.gz").exists() and exit_.status == "succeeded"


def test_a_resumed_loop_recalls_its_journaled_steps(tmp_path):
    """Resumed (redelivered, handed back), the loop knows its earlier steps: the change made
    lets it finish, a failed call is not offered again, an undone change is not 'done', and
    the history is in the prompt."""
    from types import SimpleNamespace as Past
    past = [Past(tool_call={"tool": "write_file", "args": {"path": "a.txt", "content": "a"}}, ok=True,
                 observation="wrote 1 bytes to a.txt", rollback=None),
            Past(tool_call={"tool": "shell", "args": {"cmd": "false"}}, ok=False, observation="exit=1", rollback=None),
            Past(tool_call={"tool": "write_file", "args": {"path": "b.txt", "content": "b"}}, ok=True,
                 observation="wrote 1 bytes to b.txt", rollback={"reason": "check_failed"})]
    llm = FakeScriptedLLM([[call("shell", cmd="false"), call("finish", summary="already done", success=True)]])
    runner = ToolRunner(tmp_path, make_sandbox("rlimit", max_output_chars=2000), timeout_s=5, max_output_chars=2000)
    steps: list[StepRecord] = []
    loop = AgentLoop(llm=llm, runner=runner, policy=policy_for(tmp_path), limits=Limits(max_steps=8, max_seconds=60),
                     journal=steps.append)
    exit_ = loop.run("make it so", tmp_path, past=past)
    assert isinstance(exit_, Submitted) and exit_.summary == "already done"
    assert "finish" in tools_in(llm.schemas[0])          # a change was made before the task was resumed
    assert [s.n for s in steps] == [4]                    # numbering goes on after the journaled steps
    assert steps[0].candidates[0]["error"] == "repeats a call that failed"
    assert "wrote 1 bytes to a.txt" in json.dumps(llm.prompts[0])
    state = AgentState(goal="make it so", workspace=tmp_path)
    AgentLoop.recall(state, past)
    assert state.done_changes == {call_key(past[0].tool_call)}   # b.txt's write was undone: not done
