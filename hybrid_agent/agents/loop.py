"""The agent loop. One step is one readable function, ``AgentLoop.step``: observe, plan
(the HRM's priors and the scheduler's budget), propose, check (schema, preflight, policy),
score (the EBM reranks), gate, act, verify, journal; each stage a small method. Exits are
exceptions (mini-swe-agent style): ``Submitted`` when the model calls ``finish``,
``LimitsExceeded`` when a budget is spent, ``NeedsApproval`` when the only way on is a call
the policy holds for a human (the model is told once and may find another way; offering a
held call again parks the task). Nothing the policy denies or holds is ever run."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from hybrid_agent.agents.experts import ExpertContext
from hybrid_agent.agents.hybrid import LLM_ONLY, Hybrid
from hybrid_agent.agents.prompt import PromptParts, StepView, build_messages
from hybrid_agent.agents.scheduler import Signals, choose_budget
from hybrid_agent.agents.tools import Observation, ToolRunner
from hybrid_agent.models.ebm import CandidateView, StateView, margin
from hybrid_agent.models.hrm.state import RecentStep, StepState
from hybrid_agent.models.llm.base import LLM, Candidate, LLMError
from hybrid_agent.policies.engine import Decision, ModelRisk, PolicyEngine
from hybrid_agent.policies.preflight import preflight
from hybrid_agent.policies.shell import ShellParseError, parse
from hybrid_agent.policies.tool_schema import STATE_CHANGING, TOOL_ARGS, InvalidToolCall, ToolCall, call_schema, validate_call
from hybrid_agent.rollback.compensations import undo_commands
from hybrid_agent.rollback.errors import RollbackError
from hybrid_agent.rollback.snapshots import Snapshot
from hybrid_agent.rollback.task import TaskRollback

RESAMPLE_K = 4
TRIALS = 16                 # code edits tried against the tests in scratch copies, per step
TRIAL_TOOLS = frozenset({"edit", "write_file"})
LOOK_OR_FINISH = frozenset({"finish", "read_file", "list_dir"})
RECENT_STEPS = 4            # steps of history the HRM's state holds
TOOL_PRIOR_FLOOR = 0.02     # a trained HRM's tool prior below this drops the tool from the grammar
# A failing state-changing call is undone, except a test run: its failure is the tests'
# verdict on the code, not a half-done change.
UNDONE_WHEN_FAILED = STATE_CHANGING - {"run_tests"}


Approver = Callable[[ToolCall, Decision], bool]   # True: a human approved the held call


class AgentExit(Exception):
    """The task is over; ``status`` is its final status."""

    status = "failed"

    def __init__(self, summary: str, *, success: bool = False) -> None:
        super().__init__(summary)
        self.summary = summary
        self.success = success


class Submitted(AgentExit):
    @property
    def status(self) -> str:  # type: ignore[override]
        return "succeeded" if self.success else "failed"


class LimitsExceeded(AgentExit):
    status = "failed"


class NeedsApproval(AgentExit):
    """The best next call needs a human's approval: the task waits, holding the call and
    the policy's decision."""

    status = "awaiting_approval"

    def __init__(self, summary: str, *, call: ToolCall, decision: Decision, step: int = 0,
                 scores: dict[str, float | None] | None = None) -> None:
        super().__init__(summary)
        self.call = call
        self.decision = decision
        self.step = step                # the step that held it
        self.scores = scores or {}      # what the models made of it, for the person deciding


class Cancelled(AgentExit):
    """A person cancelled the task: it stops before its next step."""

    status = "cancelled"


class Interrupted(AgentExit):
    """The worker is stopping: the task goes back to the queue after the current step."""

    status = "queued"


@dataclass(frozen=True)
class Limits:
    max_steps: int
    max_seconds: float
    k: int = 1          # candidates per step when nothing asks for more
    max_k: int = 8      # the most the scheduler may ask for


@dataclass
class Plan:
    tools: frozenset[str]
    k: int
    note: str = ""
    risk: float | None = None                              # a trained HRM's risk, for the policy
    expert_prior: dict[str, float] | None = None           # a trained HRM's weights of the proposers
    model: dict[str, Any] = field(default_factory=dict)    # what the hybrid parts decided, journaled
    # The LLM's grammar when a trained HRM narrowed it to the likely tools; the experts'
    # calls are held to ``tools`` (the loop's rules), not to the HRM's guess.
    grammar: frozenset[str] | None = None
    exclude: tuple[str, ...] = ()   # the LLM's calls this step already judged unusable


@dataclass
class Scored:
    candidate: Candidate
    call: ToolCall | None
    error: str | None
    policy: Decision | None = None
    energy: float | None = None
    p_success: float | None = None
    source: str = "llm"          # the proposer: the LLM or an expert's name
    chosen: bool = False
    trial: bool | None = None    # the tests passed after it in a scratch copy; None: not tried

    @property
    def verdict(self) -> str | None:
        return self.policy.decision if self.policy is not None else None

    def record(self) -> dict[str, Any]:
        """The candidate as journaled; denied ones stay here as the EBM's negatives."""
        logprob = self.candidate.logprob
        return {"text": self.candidate.text, "logprob": round(logprob, 4) if math.isfinite(logprob) else None,
                "tokens": self.candidate.tokens, "valid": self.call is not None, "error": self.error,
                "policy": self.policy.as_dict() if self.policy is not None else None,
                "energy": _rounded(self.energy), "p_success": _rounded(self.p_success), "source": self.source,
                "trial": self.trial, "chosen": self.chosen}


@dataclass(frozen=True)
class HumanDecision:
    """A person's decision on the call a parked task was holding."""

    call: ToolCall
    approved: bool
    reason: str = ""


@dataclass
class Turn:
    """What a step decided before acting: the gate's verdict, the chosen candidate among
    all scored, and what the step recorded on the way."""

    decision: str
    chosen: Scored | None
    scored: list[Scored]
    model: dict[str, Any]
    prompt_tokens: int
    timings: dict[str, float]
    started_at: datetime
    t0: float


@dataclass
class StepRecord:
    n: int
    tool_call: dict[str, Any] | None
    decision: str
    policy: dict[str, Any] | None
    model: dict[str, Any]
    observation: str
    ok: bool
    candidates: list[dict[str, Any]]
    prompt_tokens: int
    timings: dict[str, float]
    started_at: datetime
    duration_s: float
    snapshot_id: str | None = None          # the workspace before the step's action
    rollback: dict[str, Any] | None = None  # the action was undone: why, and what changed back

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


class PastStep(Protocol):
    """A journaled step, as a resumed loop recalls it (a step row has these)."""

    tool_call: dict[str, Any] | None
    ok: bool
    observation: str
    rollback: dict[str, Any] | None


@dataclass
class AgentState:
    goal: str
    workspace: Path
    steps: list[StepRecord] = field(default_factory=list)
    views: list[StepView] = field(default_factory=list)
    failed_calls: set[str] = field(default_factory=set)
    done_changes: set[str] = field(default_factory=set)
    changed: bool = False
    just_changed: bool = False
    force_finish: bool = False
    held_once: bool = False     # the model was told a call needs approval; the next one parks
    note: str = ""
    recent: list[RecentStep] = field(default_factory=list)
    last_mean_logprob: float | None = None
    last_margin: float | None = None
    tests_failing: bool | None = None   # from the last run of the tests; None: not run yet


def call_key(call: ToolCall | dict[str, Any]) -> str:
    data = call.model_dump() if isinstance(call, ToolCall) else call
    return json.dumps(data, sort_keys=True)


def workspace_listing(root: Path, *, limit: int = 40) -> str:
    """Files under the workspace (two levels), with sizes; what the model sees of the state."""
    lines: list[str] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if len(rel.parts) > 2 or any(part.startswith(".") for part in rel.parts):
            continue
        if len(lines) == limit:
            lines.append("...")
            break
        lines.append(f"{rel}/" if path.is_dir() else f"{rel} ({path.stat().st_size} bytes)")
    return "\n".join(lines)


class AgentLoop:
    def __init__(self, *, llm: LLM, runner: ToolRunner, policy: PolicyEngine, limits: Limits,
                 journal: Callable[[StepRecord], None], hybrid: Hybrid = LLM_ONLY,
                 clock: Callable[[], float] = time.monotonic, stopping: Callable[[], bool] = lambda: False,
                 approver: Approver | None = None, rollback: TaskRollback | None = None,
                 check_cmd: str | None = None, cancelled: Callable[[], bool] = lambda: False) -> None:
        self.cancelled = cancelled
        self.llm = llm
        self.rollback = rollback
        self.check_cmd = check_cmd
        self.approver = approver
        self.policy = policy
        self.hybrid = hybrid
        self.runner = runner
        self.limits = limits
        self.journal = journal
        self.clock = clock
        self.stopping = stopping

    def run(self, goal: str, workspace: Path, *, past: Sequence[PastStep] = (),
            decided: HumanDecision | None = None) -> AgentExit:
        """Run steps until the model finishes or a budget is spent; returns the exit. A
        resumed task (redelivered, handed back, or back from a person's decision) first
        recalls its journaled steps, then starts with the decision, if any."""
        state = AgentState(goal=goal, workspace=workspace)
        self.recall(state, past)
        started = self.clock()
        n = len(past)
        if decided is not None:
            try:
                self.check_limits(n + 1, started)
                if self.human_decided(state, n + 1, decided) is not None:
                    n += 1
            except AgentExit as exit_:
                return exit_
        while True:
            n += 1
            try:
                self.check_limits(n, started)
                self.step(state, n)
            except AgentExit as exit_:
                return exit_

    @staticmethod
    def recall(state: AgentState, past: Sequence[PastStep]) -> None:
        """What the loop had learned from a resumed task's earlier steps: their history, the
        calls that failed, the changes completed (so none is redone, and finishing is
        allowed once one was made)."""
        for step in past:
            call = step.tool_call
            if call is None or call["tool"] == "finish":
                continue
            state.views.append(StepView(call, step.observation))
            state.recent.append(RecentStep(call["tool"], step.ok, None, None if step.ok else "error"))
            if call["tool"] == "run_tests":
                state.tests_failing = not step.ok
            if not step.ok:
                state.failed_calls.add(call_key(call))
            elif call["tool"] in STATE_CHANGING and step.rollback is None:   # an undone change is not done
                state.changed = True
                state.done_changes.add(call_key(call))

    def check_limits(self, n: int, started: float) -> None:
        if self.cancelled():
            raise Cancelled(f"cancelled before step {n}")
        if self.stopping():
            raise Interrupted(f"worker stopping; handed back before step {n}")
        if n > self.limits.max_steps:
            raise LimitsExceeded(f"step budget spent ({self.limits.max_steps} steps) before the goal was reached")
        if self.clock() - started > self.limits.max_seconds:
            raise LimitsExceeded(f"time budget spent ({self.limits.max_seconds:.0f}s) before the goal was reached")

    def step(self, state: AgentState, n: int) -> StepRecord:
        started_at, t0 = datetime.now(timezone.utc), self.clock()
        timings: dict[str, float] = {}
        listing = self.observe(state)
        plan = self.plan(state, n)
        messages = build_messages(PromptParts(state.goal, listing, state.views, plan.note))
        timings["observe_s"] = self.clock() - t0
        scored, prompt_tokens, timings["propose_s"] = self.propose_and_check(messages, plan, state)
        scored += self.propose_experts(plan, state)
        chosen = self.score(scored, state)
        if chosen is None and plan.k == 1:  # greedy unusable, repeated or held: look further
            more, _, extra_s = self.propose_and_check(messages, self.look_further(plan, scored), state)
            scored, timings["propose_s"] = scored + more, timings["propose_s"] + extra_s
            chosen = self.score(scored, state)
        decision, chosen = self.gate(chosen, scored)
        decision = self.ask_approver(decision, chosen)
        return self.carry_out(state, n, Turn(decision, chosen, scored, plan.model, prompt_tokens, timings,
                                             started_at, t0))

    def carry_out(self, state: AgentState, n: int, turn: Turn) -> StepRecord:
        """Act on the gate's decision behind a snapshot, keep or undo it, journal the step,
        then verify."""
        decision, chosen, scored, timings = turn.decision, turn.chosen, turn.scored, turn.timings
        t1 = self.clock()
        try:
            snapshot = self.snapshot(decision, chosen, n)
            observation = self.act(decision, chosen, scored)
        except RollbackError as exc:   # no snapshot, no change: the call does not run
            snapshot, observation = None, Observation(ok=False, output=f"not run: {exc}")
        observation, undone = self.keep_or_undo(chosen, snapshot, observation)
        timings["act_s"] = self.clock() - t1
        record = StepRecord(n=n, tool_call=chosen.call.model_dump() if chosen and chosen.call else None,
                            decision=decision, policy=chosen.policy.as_dict() if chosen and chosen.policy else None,
                            model=turn.model, observation=observation.render(), ok=observation.ok,
                            candidates=[s.record() for s in scored], prompt_tokens=turn.prompt_tokens,
                            timings={k: round(v, 4) for k, v in timings.items()}, started_at=turn.started_at,
                            duration_s=round(self.clock() - turn.t0, 4), snapshot_id=snapshot.id if snapshot else None,
                            rollback=undone)
        self.journal(record)
        self.verify(chosen, observation, state, record, scored)
        return record

    def human_decided(self, state: AgentState, n: int, decided: HumanDecision) -> StepRecord | None:
        """A held call a person decided on while the task was parked. Approved, it runs
        as step ``n`` (unless the policy has since come to deny it); rejected, the model is
        told why and may not offer it again."""
        call = decided.call
        if not decided.approved:
            state.failed_calls.add(call_key(call))
            state.note = (f"A human rejected {call.compact()} ({decided.reason or 'no reason given'}). "
                          "Reach the goal another way, or finish.")
            return None
        policy = self.policy.check(call, goal=state.goal)
        candidate = Candidate(text=call.compact(), parsed=call.model_dump(), logprob=0.0, tokens=0)
        denied = f"policy: denied, {policy.reasons[0]}" if policy.decision == "deny" else None
        chosen = Scored(candidate, call, denied, policy=policy, source="human", chosen=denied is None)
        decision = "approved" if denied is None else "none"
        state.held_once = False
        return self.carry_out(state, n, Turn(decision, chosen if denied is None else None, [chosen], {}, 0, {},
                                             datetime.now(timezone.utc), self.clock()))

    def observe(self, state: AgentState) -> str:
        return workspace_listing(state.workspace)

    def plan(self, state: AgentState, n: int) -> Plan:
        """Which tools the grammar allows this step. ``finish`` only after a state-changing
        action succeeded (the default model otherwise 'finishes' a goal it never touched),
        or on the last step. Right after a change: look or finish, not change again (act,
        then verify; the default model otherwise follows a good change with a destructive
        one). Only ``finish`` once the model offers nothing but completed actions. Then the
        HRM and the scheduler set the budget."""
        if state.force_finish:
            return Plan(frozenset({"finish"}), 1, "The goal looks done. Finish now.", model=self.hybrid.record())
        if state.just_changed:
            tools = set(LOOK_OR_FINISH)
        else:
            tools = set(TOOL_ARGS)
            if not state.changed and n < self.limits.max_steps:
                tools.discard("finish")
        return self.schedule(Plan(frozenset(tools), self.limits.k, state.note), state, n)

    def schedule(self, plan: Plan, state: AgentState, n: int) -> Plan:
        """The HRM's view of the step (tool prior, risk, segments to halt) and the budget
        the scheduler draws from it and from the last step's uncertainty."""
        plan.model = self.hybrid.record()
        if not self.hybrid.schedules:
            return plan
        signals = Signals(last_mean_logprob=state.last_mean_logprob, last_margin=state.last_margin)
        planner = self.hybrid.planner
        if planner is not None:
            out = planner.plan(StepState(goal=state.goal, task_kind="user", step=n - 1,
                                         max_steps=self.limits.max_steps, recent=state.recent[-RECENT_STEPS:]))
            plan.model["plan"] = {"segments": out.segments, "halted_early": out.halted_early,
                                  "risk": _rounded(out.risk), "note": out.note}
            if out.trained:
                signals = Signals(out.segments, out.risk, state.last_mean_logprob, state.last_margin)
                plan.risk, plan.expert_prior = out.risk, out.expert_prior
                likely = frozenset(t for t in plan.tools if out.tool_prior.get(t, 1.0) >= TOOL_PRIOR_FLOOR)
                plan.grammar = likely or None
        budget = choose_budget(signals, max_k=self.limits.max_k)
        plan.k = max(plan.k, budget.k)
        plan.model["budget"] = budget.record()
        return plan

    def look_further(self, plan: Plan, scored: list[Scored]) -> Plan:
        """The plan for a second proposal when the greedy call was unusable: up to
        ``RESAMPLE_K`` sampled candidates, or, where K is capped at 1 (``max_k``), the
        LLM's next best call, none of the ones it already offered."""
        if self.limits.max_k > 1:
            return replace(plan, k=min(RESAMPLE_K, self.limits.max_k))
        return replace(plan, exclude=tuple(s.candidate.text for s in scored if s.source == "llm"))

    def propose_and_check(self, messages: list[dict[str, str]], plan: Plan,
                          state: AgentState) -> tuple[list[Scored], int, float]:
        """Propose K candidates under the plan's grammar; validate, preflight and police each."""
        t0 = self.clock()
        try:
            schema = call_schema(plan.grammar or plan.tools)
            proposal = self.llm.propose(messages, schema, plan.k, exclude=plan.exclude)
        except LLMError as exc:
            failed = Candidate(text="", parsed=None, logprob=float("-inf"), tokens=0, error=f"model error: {exc}")
            return [Scored(failed, None, failed.error)], 0, self.clock() - t0
        checked = [self.check(c, plan, state) for c in proposal.candidates]
        return checked, proposal.prompt_tokens, self.clock() - t0

    def propose_experts(self, plan: Plan, state: AgentState) -> list[Scored]:
        """Candidates from the experts, checked like the LLM's. Each offers its best one; a
        trained HRM's expert prior shares the plan's K among them beyond that. The floor
        is there because the prior was learned from traces in which an expert may have had
        nothing to offer (an empty playbook), and an expert's best call costs a lookup, not
        a decode. An expert whose edits scoring can verify offers up to ``TRIALS``
        whatever the prior."""
        if not self.hybrid.experts or plan.tools == frozenset({"finish"}):
            return []
        last = state.views[-1] if state.views else None
        context = ExpertContext(goal=state.goal, workspace=state.workspace,
                                last_observation=last.result if last else None, last_call=last.call if last else None)
        found: list[Scored] = []
        for expert in self.hybrid.experts:
            k = 1 if plan.expert_prior is None else max(1, round(plan.expert_prior.get(expert.name, 0.0) * plan.k))
            if expert.verifiable and self.hybrid.reranker is not None:
                k = TRIALS   # scoring tries each against the tests: a wrong one costs a test run
            for candidate in expert.propose(context, k):
                scored = self.check(candidate, plan, state)
                scored.source = expert.name
                found.append(scored)
        return found

    def check(self, candidate: Candidate, plan: Plan, state: AgentState) -> Scored:
        """Schema validation, preflight, then the policy. A call certain to fail or denied
        is kept in the journal with the reason, but never chosen."""
        if candidate.parsed is None:
            return Scored(candidate, None, candidate.error or "output is not JSON")
        try:
            call = validate_call(candidate.parsed, tools=plan.tools)
        except InvalidToolCall as exc:
            return Scored(candidate, None, str(exc))
        reason = preflight(call, state.workspace)
        if reason:
            return Scored(candidate, call, f"preflight: {reason}")
        decision = self.policy.check(call, goal=state.goal, model_risk=ModelRisk(hrm_risk=plan.risk))
        denied = f"policy: denied, {decision.reasons[0]}" if decision.decision == "deny" else None
        return Scored(candidate, call, denied, policy=decision)

    def score(self, scored: list[Scored], state: AgentState) -> Scored | None:
        """The best allowed candidate, never one that repeats a failed call or redoes a
        completed state-changing call: by the EBM's energy, else by mean log-probability."""
        for s in scored:
            if s.call is None or s.error:
                continue
            key = call_key(s.call)
            if key in state.failed_calls:
                s.error = "repeats a call that failed"
            elif key in state.done_changes:
                s.error = "repeats a completed action"
        allowed = [s for s in scored if s.call is not None and not s.error and s.verdict == "allow"]
        if self.hybrid.reranker is None or not allowed:
            return _best(allowed)
        self.trial(allowed, state)
        return self.rerank(allowed, state)

    def trial(self, allowed: list[Scored], state: AgentState) -> None:
        """Unless the tests are known to pass, try each proposed edit of Python code in a scratch copy of
        the workspace and run the tests: an edit that makes them pass is a verified fix.
        Scoring's most reliable signal for code, at a test run per candidate; the
        workspace itself is untouched until the chosen call acts."""
        if state.tests_failing is False or any(s.trial for s in allowed):
            return
        edits = [s for s in allowed if s.trial is None and s.call is not None and s.call.tool in TRIAL_TOOLS
                 and str(s.call.args.get("path", "")).endswith(".py")][:TRIALS]
        for s in edits:
            assert s.call is not None
            with tempfile.TemporaryDirectory(prefix="trial-") as scratch:
                copy = Path(scratch) / "ws"
                # Without bytecode caches: one compiled in the same second as a same-size edit passes for fresh.
                shutil.copytree(state.workspace, copy, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
                runner = self.runner.for_workspace(copy)
                s.trial = runner.run(s.call).ok and runner.run(ToolCall(tool="run_tests", args={})).ok
            if s.trial:
                return   # one verified fix is enough; the rest stay untried (None)

    def rerank(self, allowed: list[Scored], state: AgentState) -> Scored | None:
        """Lowest energy wins. A trained EBM's failure probability goes to the policy, which
        may hold the call for approval (then nothing is chosen and the gate holds it)."""
        reranker = self.hybrid.reranker
        assert reranker is not None
        ranked = reranker.score(_state_view(state), [_candidate_view(s) for s in allowed])
        for s, r in zip(allowed, ranked):
            s.energy, s.p_success = r.energy, r.p_success
        state.last_margin = margin(ranked)
        # A verified fix first; an edit the tests still fail after only when nothing else is left.
        pool = [s for s in allowed if s.trial] or [s for s in allowed if s.trial is None] or allowed
        best = min(pool, key=lambda s: s.energy if s.energy is not None else math.inf)
        # Passing tests outrank the EBM's estimate: only an unverified call may be held for it.
        if reranker.trained and best.p_success is not None and best.call is not None and not best.trial:
            best.policy = self.policy.check(best.call, goal=state.goal,
                                            model_risk=ModelRisk(ebm_failure=1 - best.p_success))
            if best.verdict != "allow":
                return None
        best.chosen = True
        return best

    @staticmethod
    def gate(chosen: Scored | None, scored: list[Scored]) -> tuple[str, Scored | None]:
        """``allow`` the chosen call; else hold the best call that needs approval; else
        ``none``. Only an allowed call reaches ``act``'s runner."""
        if chosen is not None:
            return "allow", chosen
        held = _best([s for s in scored if s.call is not None and not s.error and s.verdict == "approve"])
        return ("approve", held) if held is not None else ("none", None)

    def ask_approver(self, decision: str, chosen: Scored | None) -> str:
        """With an approver at hand (evaluation's ``--approve all|none``), a held call is
        decided at once: ``approved`` runs it, ``refused`` tells the model. Without one
        (the workers) the held call waits for a person."""
        if decision != "approve" or self.approver is None or chosen is None or chosen.call is None:
            return decision
        assert chosen.policy is not None
        return "approved" if self.approver(chosen.call, chosen.policy) else "refused"

    def act(self, decision: str, chosen: Scored | None, scored: list[Scored]) -> Observation:
        if decision == "approve" and chosen is not None and chosen.policy is not None:
            return Observation(ok=False, output=f"held for approval: {'; '.join(chosen.policy.reasons)}")
        if decision == "refused" and chosen is not None and chosen.policy is not None:
            return Observation(ok=False, output=f"a human refused this call ({chosen.policy.reasons[0]})")
        if decision not in ("allow", "approved") or chosen is None or chosen.call is None:
            reasons = sorted({s.error or "" for s in scored})
            return Observation(ok=False, output=f"no usable call: {'; '.join(reasons)}")
        return self.runner.run(chosen.call)

    def snapshot(self, decision: str, chosen: Scored | None, n: int) -> Snapshot | None:
        """The workspace as it was, taken (and journaled) just before a state-changing call runs."""
        if (self.rollback is None or decision not in ("allow", "approved") or chosen is None or chosen.call is None
                or chosen.call.tool not in STATE_CHANGING):
            return None
        return self.rollback.before(n)

    def keep_or_undo(self, chosen: Scored | None, snapshot: Snapshot | None,
                     observation: Observation) -> tuple[Observation, dict[str, Any] | None]:
        """A state-changing call that failed, or after which the task's check fails, is
        undone: the workspace goes back to its snapshot, and the model reads that it was.
        One that succeeded registers the undo of its effects outside files."""
        if snapshot is None or chosen is None or chosen.call is None or self.rollback is None:
            return observation, None
        call = chosen.call
        if observation.ok:
            self.register_compensations(call, snapshot)
            failed_check = self.run_check()
            if failed_check is None:
                return observation, None
            reason, observation = "check_failed", replace(
                observation, ok=False, output=f"{observation.output}\ncheck failed after this call: {failed_check}")
        elif call.tool in UNDONE_WHEN_FAILED:
            reason = "action_failed"
        else:
            return observation, None
        restore = self.rollback.undo(snapshot, reason=reason)
        note = "undone: the workspace is as it was before this call" if restore.ok else restore.describe()
        undone = {"reason": reason, "ok": restore.ok, "summary": restore.describe()}
        return replace(observation, output=f"{observation.output}\n({note})"), undone

    def register_compensations(self, call: ToolCall, snapshot: Snapshot) -> None:
        """A shell call's commands with a known inverse (a service started, a user added)
        register it, so that a rollback can undo what no snapshot holds."""
        if self.rollback is None or call.tool != "shell":
            return
        try:
            commands = parse(call.args["cmd"])
        except ShellParseError:
            return
        undos = undo_commands([(c.argv, "sudo" in c.via) for c in commands])
        if undos:
            self.rollback.register(snapshot, undos, undoes=call.args["cmd"])

    def run_check(self) -> str | None:
        """The task's check after a change: None when it passes (or there is none), else
        what it printed."""
        if not self.check_cmd:
            return None
        result = self.runner.run(ToolCall(tool="shell", args={"cmd": self.check_cmd}))
        return None if result.ok else result.render()[-1000:]

    @staticmethod
    def verify(chosen: Scored | None, observation: Observation, state: AgentState, record: StepRecord,
               scored: list[Scored]) -> None:
        """Update what the loop knows; raise Submitted when the model finished."""
        if chosen is None:
            # Offering only to redo completed actions is the model saying it is done.
            state.force_finish = any(s.error == "repeats a completed action" for s in scored)
            reasons = "; ".join(sorted({s.error.removeprefix("preflight: ") for s in scored if s.error})[:2])
            state.note = "" if state.force_finish else f"Refused ({reasons}). Try a different call."
            return
        call = chosen.call
        state.last_mean_logprob = chosen.candidate.logprob / max(chosen.candidate.tokens, 1)
        if record.decision == "approve" and chosen.policy is not None:
            if state.held_once:
                scores = {"ebm_p_success": _rounded(chosen.p_success), "ebm_energy": _rounded(chosen.energy),
                          "hrm_risk": (record.model.get("plan") or {}).get("risk"),
                          "mean_logprob": _rounded(state.last_mean_logprob)}
                raise NeedsApproval(f"waiting for approval of {call.compact()}", call=call, decision=chosen.policy,
                                    step=record.n, scores=scores)
            state.held_once = True
            state.note = (f"That call needs a human's approval ({chosen.policy.reasons[0]}). If the goal can be "
                          "reached another way, do that; if not, propose the call again.")
            return
        state.just_changed = observation.ok and call.tool in STATE_CHANGING
        if call.tool == "finish":
            raise Submitted(call.args["summary"], success=bool(call.args["success"]))
        key = call_key(call)
        if call.tool == "run_tests":
            state.tests_failing = not observation.ok
        state.views.append(StepView(call.model_dump(), record.observation))
        state.recent.append(RecentStep(call.tool, observation.ok, observation.exit_code,
                                       "timeout" if observation.timed_out else None if observation.ok else "error"))
        if observation.ok:
            state.note = ""
            if call.tool in STATE_CHANGING:
                state.note = f"That worked. The goal was: {state.goal}. If it is reached now, call finish."
                state.changed = True
                state.done_changes.add(key)
        else:
            state.failed_calls.add(key)
            state.note = "That call failed. Try a different call."


def _best(candidates: list[Scored]) -> Scored | None:
    """The candidate with the highest mean log-probability per token, marked chosen."""
    if not candidates:
        return None
    best = max(candidates, key=lambda s: s.candidate.logprob / max(s.candidate.tokens, 1))
    best.chosen = True
    return best


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None and math.isfinite(value) else None


def _state_view(state: AgentState) -> StateView:
    recent = [f"{view.call} -> {view.result[:200]}" for view in state.views[-RECENT_STEPS:]]
    return StateView(goal=state.goal, recent=recent, failed_calls=sorted(state.failed_calls),
                     tests_failing=state.tests_failing)


def _candidate_view(scored: Scored) -> CandidateView:
    candidate = scored.candidate
    return CandidateView(text=candidate.text, call=scored.call.model_dump() if scored.call else None,
                         mean_logprob=candidate.logprob / max(candidate.tokens, 1), policy=scored.verdict,
                         error=scored.error)
