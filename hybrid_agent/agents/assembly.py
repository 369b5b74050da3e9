"""One agent loop from the settings: what a worker runs for each task, and what
evaluation and trace collection run, so that they measure the same thing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_agent.agents.hybrid import Hybrid
from hybrid_agent.agents.loop import AgentLoop, Approver, Limits, StepRecord
from hybrid_agent.agents.sandbox import Sandbox, SandboxLimits, make_sandbox
from hybrid_agent.agents.tools import ToolRunner
from hybrid_agent.config import Settings
from hybrid_agent.models.llm import load_llm
from hybrid_agent.models.llm.base import LLM, Proposal
from hybrid_agent.models.tpc import load_tpc
from hybrid_agent.policies.engine import CallClassifier, PolicyEngine
from hybrid_agent.policies.policy_file import Policy, load_policy
from hybrid_agent.policies.tool_schema import ToolCall
from hybrid_agent.rollback.snapshots import SnapshotStore
from hybrid_agent.rollback.task import CommandRunner, RollbackRecord, TaskRollback


class OneCallAtATime:
    """An LLM shared by a worker's concurrent tasks: one ``propose`` at a time, as a local
    model's reused prompt cache is not safe across threads (their tools still overlap)."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.name = llm.name
        self.lock = threading.Lock()

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any], k: int, *,
                exclude: Sequence[str] = ()) -> Proposal:
        with self.lock:
            return self.llm.propose(messages, schema, k, exclude=exclude)


@dataclass(frozen=True)
class AgentParts:
    """What every task's loop shares: loaded once per process."""

    llm: LLM
    sandbox: Sandbox
    policy: Policy
    classifier: CallClassifier | None

    def describe(self) -> str:
        return (f"{self.llm.name}, sandbox {self.sandbox.isolation}, policy {self.policy.version}"
                f"{', classifier on' if self.classifier else ''}")


def load_parts(settings: Settings, *, seed: int | None = None, llm: LLM | None = None) -> AgentParts:
    """The LLM (unless one is given), sandbox, policy and call classifier the settings name
    (slow: loads models)."""
    if llm is None:
        api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        llm = load_llm(settings.llm, cache_dir=settings.model_cache_dir, seed=settings.seed if seed is None else seed,
                       max_new_tokens=settings.llm_max_new_tokens, temperature=settings.llm_temperature,
                       timeout_s=settings.llm_timeout_s, retries=settings.llm_retries, api_key=api_key,
                       adapter=settings.llm_adapter, quantize=settings.llm_quantize,
                       loop_tokens=settings.llm_loop_tokens)
    sandbox = make_sandbox(settings.sandbox, max_output_chars=settings.max_output_chars,
                           limits=SandboxLimits.from_settings(settings), require_bwrap=settings.require_bwrap)
    classifier = load_tpc(settings.tpc_checkpoint) if settings.tpc else None
    return AgentParts(llm=llm, sandbox=sandbox, policy=load_policy(settings.policy), classifier=classifier)


def tool_runner(settings: Settings, *, workspace: Path, sandbox: Sandbox) -> ToolRunner:
    return ToolRunner(workspace=workspace, sandbox=sandbox, timeout_s=settings.tool_timeout_s,
                      max_output_chars=settings.max_output_chars, max_timeout_s=settings.tool_max_timeout_s,
                      test_cmd=settings.test_cmd)


def agent_limits(settings: Settings) -> Limits:
    return Limits(max_steps=settings.max_steps, max_seconds=settings.max_seconds, k=settings.candidates,
                  max_k=settings.max_candidates)


def command_runner(runner: ToolRunner) -> CommandRunner:
    """Shell commands (compensations, a task's check) through a runner's sandbox."""
    def run(cmd: str) -> tuple[bool, str]:
        observation = runner.run(ToolCall(tool="shell", args={"cmd": cmd}))
        return observation.ok, observation.render()
    return run


def sandboxed_commands(settings: Settings, workspace: Path) -> CommandRunner:
    """Compensations run outside a task (a rollback asked for by the CLI or the API), in
    the sandbox the settings name; made on first use, as most rollbacks have none."""
    made: list[CommandRunner] = []

    def run(cmd: str) -> tuple[bool, str]:
        if not made:
            sandbox = make_sandbox(settings.sandbox, max_output_chars=settings.max_output_chars,
                                   limits=SandboxLimits.from_settings(settings), require_bwrap=settings.require_bwrap)
            made.append(command_runner(tool_runner(settings, workspace=workspace, sandbox=sandbox)))
        return made[0](cmd)
    return run


@dataclass(frozen=True)
class Undo:
    """Where a task's snapshots go and how they are journaled; ``check_cmd`` (optional) must
    pass after every change, else the change is undone."""

    store: SnapshotStore
    journal: Callable[[RollbackRecord], None]
    task_id: str | None = None
    check_cmd: str | None = None


def build_loop(settings: Settings, *, workspace: Path, llm: LLM, sandbox: Sandbox, policy: Policy, hybrid: Hybrid,
               journal: Callable[[StepRecord], None], classifier: CallClassifier | None = None,
               stopping: Callable[[], bool] = lambda: False, approver: Approver | None = None,
               undo: Undo | None = None, cancelled: Callable[[], bool] = lambda: False,
               loop_class: type[AgentLoop] = AgentLoop) -> AgentLoop:
    """The agent for one task in ``workspace``: tools confined to it, the policy scoped to
    it, and with ``undo``, a snapshot before each change that a failure rolls back to."""
    engine = PolicyEngine(policy, scopes=[workspace], test_cmd=settings.test_cmd, classifier=classifier)
    runner = tool_runner(settings, workspace=workspace, sandbox=sandbox)
    rollback = None if undo is None else TaskRollback(undo.store, scope=workspace, task_id=undo.task_id,
                                                      journal=undo.journal, run=command_runner(runner))
    return loop_class(llm=llm, runner=runner, policy=engine, limits=agent_limits(settings), journal=journal,
                      hybrid=hybrid, stopping=stopping, approver=approver, rollback=rollback,
                      check_cmd=undo.check_cmd if undo else None, cancelled=cancelled)
