"""The hybrid model in the loop: the HRM's segments and risk set the budget and reach the
policy, the EBM picks among allowed candidates and its failure estimate can hold a call,
untrained parts fall back to neutral ones that change nothing, and each step journals
which parts ran. The HRM and EBM here are fakes: the models are not what these test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_agent.agents.hybrid import LLM_ONLY, Hybrid, load_hybrid
from hybrid_agent.agents.loop import AgentLoop, Limits, NeedsApproval, StepRecord
from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.tools import ToolRunner
from hybrid_agent.models.ebm import Ranked
from hybrid_agent.models.ebm.reranker import NeutralReranker
from hybrid_agent.models.hrm.planner import NeutralPlanner
from hybrid_agent.policies.tool_schema import TOOL_ARGS
from hybrid_agent.models.hrm.planner import PlanOutput
from hybrid_agent.policies.engine import PolicyEngine
from hybrid_agent.policies.policy_file import load_policy
from tests.fakes import FakeScriptedLLM


def call(tool: str, **args) -> str:
    return json.dumps({"tool": tool, "args": args})


FINISH = call("finish", summary="done", success=True)


class FakeTrainedPlanner:
    name, trained, note = "fake-hrm", True, "fake"

    def __init__(self, segments: int = 1, risk: float = 0.1) -> None:
        self.segments, self.risk, self.states = segments, risk, []

    def plan(self, state) -> PlanOutput:
        self.states.append(state)
        return PlanOutput({}, {"llm": 1.0}, self.risk, self.segments, False, True, "fake")


class FakeTrainedReranker:
    """Prefers the candidate whose text contains ``liked``."""

    name, trained, note = "fake-ebm", True, "fake"

    def __init__(self, liked: str, p_success: float = 0.9) -> None:
        self.liked, self.p_success = liked, p_success

    def score(self, state, candidates) -> list[Ranked]:
        return [Ranked(0.0 if self.liked in c.text else 5.0, self.p_success) for c in candidates]


def run(tmp_path: Path, script, hybrid: Hybrid) -> tuple[object, list[StepRecord], FakeScriptedLLM]:
    llm = FakeScriptedLLM(script)
    runner = ToolRunner(tmp_path, make_sandbox("rlimit", max_output_chars=500), timeout_s=60,
                        max_output_chars=500)  # a loaded machine: pytest may take seconds to start
    steps: list[StepRecord] = []
    loop = AgentLoop(llm=llm, runner=runner, policy=PolicyEngine(load_policy(), scopes=[tmp_path]),
                     limits=Limits(max_steps=4, max_seconds=60), journal=steps.append, hybrid=hybrid)
    return loop.run("make notes", tmp_path), steps, llm


def test_unknown_ablations_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="valid: full, llm_only, no_ebm, no_hrm, flat_hrm"):
        load_hybrid("half")


@pytest.mark.parametrize("ablation, planner, reranker", [
    ("full", True, True), ("llm_only", False, False), ("no_ebm", True, False), ("no_hrm", False, True),
    ("flat_hrm", True, True)])
def test_each_ablation_keeps_its_parts_and_untrained_ones_say_so(ablation, planner, reranker):
    record = load_hybrid(ablation).record()
    assert record["ablation"] == ablation
    assert (record["planner"] is not None) == planner and (record["reranker"] is not None) == reranker
    for part in (record["planner"], record["reranker"]):
        if part is not None and not part["trained"]:
            assert "untrained" in part["note"]


def test_neutral_parts_choose_exactly_what_the_llm_alone_would(tmp_path):
    script = [[call("shell", cmd="touch a"), call("shell", cmd="touch b")], [FINISH]]
    (tmp_path / "alone").mkdir()
    (tmp_path / "hybrid").mkdir()
    _, alone, _ = run(tmp_path / "alone", script, LLM_ONLY)
    neutral = Hybrid("full", NeutralPlanner(list(TOOL_ARGS), ["llm"]), NeutralReranker())
    _, hybrid, llm = run(tmp_path / "hybrid", script, neutral)
    assert [s.tool_call for s in hybrid] == [s.tool_call for s in alone]
    assert llm.ks[0] == 1 and hybrid[0].model["budget"]["k"] == 1
    assert hybrid[0].model["ablation"] == "full" and alone[0].model["ablation"] == "llm_only"


def test_more_hrm_segments_buy_more_candidates(tmp_path):
    planner = FakeTrainedPlanner(segments=2)
    _, steps, llm = run(tmp_path, [[call("shell", cmd="touch a")], [FINISH]], Hybrid("full", planner, None))
    assert llm.ks[0] == 4 and list(steps[0].model["budget"]["reasons"]) == ["HRM halted after 2 segments"]
    assert planner.states[0].goal == "make notes" and planner.states[1].recent[0].tool == "shell"


def test_a_risky_hrm_sends_an_allowed_call_to_a_human(tmp_path):
    touch = call("shell", cmd="touch a")
    exit_, steps, _ = run(tmp_path, [[touch]] * 4, Hybrid("full", FakeTrainedPlanner(risk=0.99), None))
    assert isinstance(exit_, NeedsApproval) and exit_.decision.rules == ("hrm-risk",)
    assert not (tmp_path / "a").exists()


def test_the_ebm_picks_among_allowed_candidates_and_its_energies_are_journaled(tmp_path):
    script = [[call("shell", cmd="touch a"), call("shell", cmd="touch b")], [FINISH]]
    _, steps, _ = run(tmp_path, script, Hybrid("no_hrm", None, FakeTrainedReranker("touch b")))
    assert steps[0].tool_call["args"]["cmd"] == "touch b"
    assert [c["energy"] for c in steps[0].candidates] == [5.0, 0.0]


def test_a_call_the_ebm_expects_to_fail_is_held_for_approval(tmp_path):
    touch = call("shell", cmd="touch a")
    exit_, _, _ = run(tmp_path, [[touch]] * 4, Hybrid("no_hrm", None, FakeTrainedReranker("touch", 0.05)))
    assert isinstance(exit_, NeedsApproval) and exit_.decision.rules == ("ebm-failure",)


class FakeExpert:
    name = "fake-expert"
    verifiable = False

    def __init__(self, text: str) -> None:
        self.text, self.asked = text, []

    def propose(self, context, k):
        from hybrid_agent.models.llm.base import Candidate
        self.asked.append((context, k))
        return [Candidate(self.text, json.loads(self.text), -0.1, 1)][:k]


def test_an_expert_proposes_beside_the_llm_and_its_candidate_is_judged_the_same(tmp_path):
    expert = FakeExpert(call("shell", cmd="mkdir out"))
    script = [[call("shell", cmd="rm -rf /")], [FINISH]]
    exit_, steps, _ = run(tmp_path, script, Hybrid("no_hrm", None, None, (expert,)))
    assert steps[0].tool_call["args"]["cmd"] == "mkdir out" and (tmp_path / "out").is_dir()
    sources = {c["source"]: c for c in steps[0].candidates}
    assert sources["llm"]["policy"]["decision"] == "deny" and sources["fake-expert"]["chosen"]
    assert expert.asked[0][0].goal == "make notes" and exit_.status == "succeeded"


def test_an_expert_a_trained_hrm_gives_no_weight_still_offers_its_best_call(tmp_path):
    # The prior was learned from traces in which an expert may have had nothing to offer
    # (an empty playbook); its best call costs a lookup, so the prior shares only the rest.
    expert = FakeExpert(call("shell", cmd="mkdir out"))
    planner = FakeTrainedPlanner()   # its expert prior is all on the LLM
    _, steps, _ = run(tmp_path, [[call("shell", cmd="rm -rf /")], [FINISH]], Hybrid("full", planner, None, (expert,)))
    assert expert.asked and all(k == 1 for _, k in expert.asked)
    assert steps[0].tool_call["args"]["cmd"] == "mkdir out" and (tmp_path / "out").is_dir()


def test_while_tests_fail_scoring_tries_code_edits_in_scratch_copies_and_prefers_a_verified_fix(tmp_path):
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (tmp_path / "test_calc.py").write_text("from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    wrong = call("edit", path="calc.py", old="return a - b", new="return a * b")
    right = call("edit", path="calc.py", old="return a - b", new="return a + b")
    script = [[call("run_tests")], [wrong, right], [FINISH]]
    # The fake EBM likes the wrong edit: only the trial can tell them apart.
    _, steps, _ = run(tmp_path, script, Hybrid("no_hrm", None, FakeTrainedReranker("a * b")))
    assert [c["trial"] for c in steps[1].candidates] == [False, True]
    assert steps[1].tool_call["args"]["new"] == "return a + b"
    assert (tmp_path / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_once_the_tests_are_known_to_pass_nothing_is_tried(tmp_path):
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    pass\n")
    writes = [call("write_file", path="a.py", content="x = 1\n"), call("write_file", path="b.py", content="")]
    script = [[call("run_tests")], [call("list_dir", path=".")], writes, [FINISH]]
    _, steps, _ = run(tmp_path, script, Hybrid("no_hrm", None, FakeTrainedReranker("b.py")))
    assert [c["trial"] for c in steps[2].candidates] == [None, None]


def test_an_edit_the_tests_still_fail_after_loses_to_a_call_that_was_not_tried(tmp_path):
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (tmp_path / "test_calc.py").write_text("from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    clobber = call("write_file", path="calc.py", content="junk")
    look = call("read_file", path="calc.py")
    script = [[clobber, look], [call("write_file", path="notes.txt", content="n")], [FINISH]]
    _, steps, _ = run(tmp_path, script, Hybrid("no_hrm", None, FakeTrainedReranker("junk")))
    assert [c["trial"] for c in steps[0].candidates] == [False, None]
    assert steps[0].tool_call["tool"] == "read_file"
    assert (tmp_path / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"


class FakeNarrowingPlanner(FakeTrainedPlanner):
    """A trained HRM sure that the next tool is a shell command, and that the LLM alone proposes."""

    def plan(self, state) -> PlanOutput:
        self.states.append(state)
        prior = {tool: 0.0 for tool in ("shell", "python", "read_file", "write_file", "edit", "list_dir",
                                        "run_tests", "finish")} | {"shell": 1.0}
        return PlanOutput(prior, {"llm": 1.0}, self.risk, self.segments, False, True, "fake")


def test_the_hrm_narrows_the_llms_grammar_but_a_verifiable_experts_fix_still_counts(tmp_path):
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (tmp_path / "test_calc.py").write_text("from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    fix = FakeVerifiableExpert(call("edit", path="calc.py", old="return a - b", new="return a + b"))
    script = [[call("shell", cmd="ls")], [FINISH]]
    hybrid = Hybrid("full", FakeNarrowingPlanner(), FakeTrainedReranker("ls"), (fix,))
    _, steps, llm = run(tmp_path, script, hybrid)
    assert tools_in_schema(llm.schemas[0]) == {"shell"}
    assert fix.asked[0][1] > 0                        # asked despite its zero prior
    assert steps[0].tool_call["tool"] == "edit"       # the verified fix beat the EBM's favourite
    assert (tmp_path / "calc.py").read_text().endswith("a + b\n")


class FakeVerifiableExpert(FakeExpert):
    name = "fake-fixer"
    verifiable = True


def tools_in_schema(schema: dict) -> set[str]:
    return {v["properties"]["tool"]["const"] for v in schema.get("anyOf", [schema])}


def test_a_verified_fix_is_not_held_for_the_ebms_doubt(tmp_path):
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (tmp_path / "test_calc.py").write_text("from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    right = call("edit", path="calc.py", old="return a - b", new="return a + b")
    doubtful = FakeTrainedReranker("a + b", p_success=0.05)   # would hold any call it scores
    _, steps, _ = run(tmp_path, [[right]] + [[FINISH]] * 8, Hybrid("no_hrm", None, doubtful))
    assert steps[0].decision == "allow" and steps[0].candidates[0]["trial"] is True
    assert (tmp_path / "calc.py").read_text().endswith("a + b\n")
