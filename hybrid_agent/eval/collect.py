"""``hybrid-agent collect``: run a pack's train split with K > 1 and keep every candidate,
labelled by execution, as training data for the EBM, the HRM and the SFT adapter.

Labelling: before the chosen call acts, every other allowed candidate, and perturbed
near misses of the chosen one (mutated paths, flags, values: ``models.ebm.negatives``),
runs in a scratch copy of the workspace, followed by the task's check. A candidate whose
run fails is a negative (0); one after which the check passes is a positive (1); one that
ran but did not finish the task is unknown (null) unless it lay on a path that ended in
success. Invalid, denied and repeated candidates are negatives without running.

Output, one JSONL file each, in the formats the trainers read:
``ebm.jsonl`` (``models.ebm.data.load_traces``), ``hrm.jsonl`` (``models.hrm.data.load_traces``),
``sft.jsonl`` (``models.llm.sft``: the prompt and the call text of each step of a task that
succeeded) and ``playbook.jsonl`` (goal and call of those steps, for the playbook expert)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from hybrid_agent.agents.loop import AgentLoop, AgentState, Plan, Scored, StepRecord, _state_view
from hybrid_agent.agents.tools import Observation
from hybrid_agent.eval.harness import EvalRun, TaskResult
from hybrid_agent.eval.packs import Task, run_script
from hybrid_agent.models.ebm.negatives import near_misses
from hybrid_agent.models.hrm.data import HORIZON
from hybrid_agent.policies.tool_schema import STATE_CHANGING, InvalidToolCall, ToolCall, validate_call

CHECK_TIMEOUT_S = 60
PERTURBED_PER_STEP = 3


@dataclass
class Label:
    exec_ok: bool | None = None      # None: not run
    check_pass: bool | None = None   # None: not checked
    kind: str = "proposed"           # proposed, or the near-miss kind of a perturbed negative

    def outcome(self, *, on_success_path: bool) -> int | None:
        if self.check_pass:
            return 1
        if self.exec_ok is False:
            return 0
        return 1 if on_success_path else None


@dataclass
class TraceStep:
    """One step as collected: the record, the prompt, the state views, and labels."""

    record: StepRecord
    messages: list[dict[str, str]]
    state: dict[str, Any]            # EBM state view: goal, recent, failed_calls, tests_failing
    hrm_state: dict[str, Any]        # HRM state: goal, task_kind, step, max_steps, recent
    labels: list[Label]              # aligned with record.candidates
    perturbed: list[tuple[dict[str, Any], Label]] = field(default_factory=list)


class LabellingLoop(AgentLoop):
    """The agent loop, plus labelling of the candidates it did not choose. Everything the
    loop decides is unchanged: labels are computed in scratch copies only."""

    def __init__(self, *, check: str, scratch: Path, steps: list[TraceStep], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check_script = check
        self.scratch = scratch
        self.trace_steps = steps
        self._messages: list[dict[str, str]] = []
        self._state: dict[str, Any] = {}
        self._hrm_state: dict[str, Any] = {}
        self._pending: tuple[list[Label], list[tuple[dict[str, Any], Label]]] = ([], [])
        self._journal_on = self.journal
        self.journal = self._keep_and_journal

    def plan(self, state: AgentState, n: int) -> Plan:
        recent = [{"tool": r.tool, "ok": r.ok, "exit_code": r.exit_code, "error_class": r.error_class}
                  for r in state.recent[-4:]]
        self._hrm_state = {"goal": state.goal, "task_kind": "user", "step": n - 1,
                           "max_steps": self.limits.max_steps, "recent": recent}
        return super().plan(state, n)

    def propose_and_check(self, messages: list[dict[str, str]], plan: Plan,
                          state: AgentState) -> tuple[list[Scored], int, float]:
        self._messages = messages
        return super().propose_and_check(messages, plan, state)

    def score(self, scored: list[Scored], state: AgentState) -> Scored | None:
        view = _state_view(state)
        self._state = {"goal": view.goal, "recent": view.recent, "failed_calls": view.failed_calls,
                       "tests_failing": view.tests_failing}
        return super().score(scored, state)

    def act(self, decision: str, chosen: Scored | None, scored: list[Scored]) -> Observation:
        workspace = self.runner.workspace
        labels = [self._label(s, chosen, workspace) for s in scored]
        perturbed = self._perturbed(chosen, workspace)
        observation = super().act(decision, chosen, scored)
        if chosen is not None and chosen.call is not None and decision in ("allow", "approved"):
            index = next(i for i, s in enumerate(scored) if s is chosen)
            labels[index] = Label(exec_ok=observation.ok, check_pass=self._check(workspace)
                                  if observation.ok and chosen.call.tool in STATE_CHANGING else None)
        self._pending = (labels, perturbed)
        return observation

    def _label(self, s: Scored, chosen: Scored | None, workspace: Path) -> Label:
        if s is chosen:
            return Label()   # filled in from the real run
        if s.verdict == "approve" and not s.error:
            return Label()   # held for a person: neither good nor bad by itself
        if s.call is None or s.error or s.verdict != "allow":
            return Label(exec_ok=False)
        return self._try(s.call, workspace)

    def _perturbed(self, chosen: Scored | None, workspace: Path) -> list[tuple[dict[str, Any], Label]]:
        if chosen is None or chosen.call is None or chosen.call.tool not in STATE_CHANGING:
            return []
        found = []
        for negative in near_misses(chosen.call.model_dump(), seed=len(self.trace_steps))[:PERTURBED_PER_STEP]:
            try:
                call = validate_call(negative.call)
            except InvalidToolCall:
                found.append((negative.call, Label(exec_ok=False, kind=negative.kind)))
                continue
            decision = self.policy.check(call, goal=self._state.get("goal", ""))
            label = self._try(call, workspace) if decision.decision == "allow" else Label(exec_ok=False)
            label.kind = negative.kind
            found.append((call.model_dump(), label))
        return found

    def _try(self, call: ToolCall, workspace: Path) -> Label:
        """Run ``call`` in a scratch copy of the workspace; then the check if it worked."""
        copy = self.scratch / "candidate"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(workspace, copy, symlinks=True)
        try:
            ok = self.runner.for_workspace(copy).run(call).ok
            return Label(exec_ok=ok, check_pass=self._check(copy) if ok and call.tool in STATE_CHANGING else None)
        finally:
            shutil.rmtree(copy, ignore_errors=True)

    def _check(self, workspace: Path) -> bool:
        return run_script(self.check_script, workspace, timeout_s=CHECK_TIMEOUT_S).ok

    def _keep_and_journal(self, record: StepRecord) -> None:
        """Keep the step with its prompt, state views and labels, then journal it as usual."""
        labels, perturbed = self._pending
        self._pending = ([], [])
        self.trace_steps.append(TraceStep(record, self._messages, self._state, self._hrm_state,
                                          labels or [Label() for _ in record.candidates], perturbed))
        self._journal_on(record)


class CollectRun(EvalRun):
    """An evaluation run whose loops label candidates; ``steps`` holds the current task's."""

    def __init__(self, *args: Any, scratch: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scratch = scratch
        self.steps: list[TraceStep] = []

    def agent(self, task: Task, workspace: Path, records: list[StepRecord]) -> AgentLoop:
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.steps = []
        self.loop_class = partial(LabellingLoop, check=task.check, scratch=self.scratch, steps=self.steps)
        return super().agent(task, workspace, records)


class TraceWriter:
    """Appends a finished task's steps to the four training files."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files = {name: (out_dir / f"{name}.jsonl").open("a", encoding="utf-8")
                      for name in ("ebm", "hrm", "sft", "playbook")}
        self.counts = {name: 0 for name in self.files}

    def write_task(self, task: Task, result: TaskResult, steps: list[TraceStep]) -> None:
        for index, step in enumerate(steps):
            self._write("ebm", ebm_group(step, on_success_path=result.succeeded))
            hrm = hrm_example(step, failed_soon=not result.succeeded and len(steps) - index <= HORIZON)
            if hrm is not None:
                self._write("hrm", hrm)
            chosen = step.record.tool_call
            if result.succeeded and chosen is not None and step.record.ok:
                self._write("sft", {"messages": step.messages, "completion": ToolCall.model_validate(chosen).compact(),
                                    "task_id": task.id})
                if chosen["tool"] != "finish":
                    self._write("playbook", {"goal": task.goal, "call": chosen})

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()

    def _write(self, name: str, row: dict[str, Any]) -> None:
        self.files[name].write(json.dumps(row) + "\n")
        self.files[name].flush()
        self.counts[name] += 1


def ebm_group(step: TraceStep, *, on_success_path: bool) -> dict[str, Any]:
    candidates = []
    for candidate, label in zip(step.record.candidates, step.labels):
        mean = candidate["logprob"] / max(candidate["tokens"] or 1, 1) if candidate["logprob"] is not None else -10.0
        call = _parsed(candidate["text"]) if candidate["valid"] else None
        candidates.append({"text": candidate["text"], "call": call, "mean_logprob": mean,
                           "policy": (candidate["policy"] or {}).get("decision"), "error": candidate["error"],
                           "outcome": label.outcome(on_success_path=on_success_path and candidate["chosen"]),
                           "kind": candidate["source"]})
    for call, label in step.perturbed:
        candidates.append({"text": json.dumps(call), "call": call, "mean_logprob": -2.0, "policy": "allow",
                           "error": None, "outcome": label.outcome(on_success_path=False),
                           "kind": f"perturbed:{label.kind}"})
    return {**step.state, "candidates": candidates}


def hrm_example(step: TraceStep, *, failed_soon: bool) -> dict[str, Any] | None:
    call = step.record.tool_call
    if call is None:
        return None
    chosen = next((c for c in step.record.candidates if c["chosen"]), None)
    return {"state": step.hrm_state, "next_tool": call["tool"], "expert": chosen["source"] if chosen else None,
            "failed_soon": failed_soon}


def _parsed(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
