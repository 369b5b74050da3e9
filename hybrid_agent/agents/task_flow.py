"""Around the agent's loop, for tasks that are more than a goal: a template's preparation
and conclusion, a dry run's scratch copy and predicted change set, and applying (or
keeping) a change set once a person decided on it.

Preparation runs once per task; what it found is journaled (``task.prepared``), so a task
that is redelivered or resumed after an approval picks it up instead of preparing again."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.agents.change_sets import ChangeSet, apply as apply_files, predict, scratch_copy
from hybrid_agent.agents.templates import Outcome, apply_git_branch, template_run
from hybrid_agent.rollback import journal as rollback_journal
from hybrid_agent.rollback.snapshots import SnapshotStore
from hybrid_agent.rollback.task import CommandRunner
from hybrid_agent.store import queries
from hybrid_agent.store.tables import TaskRow

PREPARED = "task.prepared"


@dataclass(frozen=True)
class TaskSpec:
    """What a worker needs of a task's row."""

    id: str
    goal: str
    workspace: str | None
    check_cmd: str | None
    template: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    budgets: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None
    resource: str | None = None
    rule: str | None = None
    rule_concurrency: int | None = None   # at most this many of the rule's tasks at once

    @classmethod
    def of(cls, row: TaskRow) -> TaskSpec:
        return cls(row.id, row.goal, row.workspace, row.check_cmd, row.template, row.params or {}, bool(row.dry_run),
                   row.budgets or {}, row.policy, row.resource, row.rule, row.rule_concurrency)

    @property
    def shaped(self) -> bool:
        """Whether anything happens around the loop (else the loop is all there is)."""
        return self.template is not None or self.dry_run


@dataclass(frozen=True)
class Preparation:
    goal: str
    workdir: str                       # where the loop runs: the workspace, or a dry run's scratch copy
    facts: dict[str, Any] = field(default_factory=dict)
    base_manifest: str | None = None   # dry runs: the scope when the run started


@dataclass(frozen=True)
class ChangeSetDecision:
    """A person's decision on a change set the task proposed."""

    change_set: dict[str, Any]
    approved: bool
    reason: str


class TaskFlow:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], snapshots: SnapshotStore, *, scratch_dir: Path,
                 patches_dir: Path) -> None:
        self.sessions = sessions
        self.snapshots = snapshots
        self.scratch_dir = scratch_dir
        self.patches_dir = patches_dir

    async def prepare(self, spec: TaskSpec, workspace: Path, run_in: Any) -> Preparation:
        """The task's preparation: journaled once, then read back. ``run_in(workdir)`` is
        the sandboxed command runner for a directory. Raises the template's
        TemplateFailed or NothingToDo."""
        if not spec.shaped:
            return Preparation(spec.goal, str(workspace))
        async with self.sessions() as session:
            done = await queries.journal_entry(session, task_id=spec.id, kind=PREPARED)
        if done is not None:
            return Preparation(**done.detail)
        workdir, base = workspace, None
        if spec.dry_run:
            workdir = self.scratch_dir / spec.id
            snapshot = await asyncio.to_thread(scratch_copy, self.snapshots, workspace, workdir)
            await self._save(snapshot)
            base = snapshot.manifest
        goal, facts = spec.goal, {}
        if spec.template is not None:
            prepared = await asyncio.to_thread(template_run(spec.template, spec.params, task_id=spec.id).prepare,
                                               workdir, run_in(workdir))
            goal, facts = goal + prepared.note, prepared.facts
        preparation = Preparation(goal, str(workdir), facts, base)
        async with self.sessions.begin() as session:
            await queries.add_journal(session, kind=PREPARED, task_id=spec.id, detail=asdict(preparation))
        return preparation

    async def conclude(self, spec: TaskSpec, workspace: Path, prep: Preparation, run: CommandRunner) -> Outcome:
        """After a loop that succeeded: the template's verification, and for a dry run the
        predicted change set (unless the template proposes its own)."""
        outcome = Outcome(True, "the agent finished")
        workdir = Path(prep.workdir)
        if spec.template is not None:
            runner = template_run(spec.template, spec.params, task_id=spec.id)
            outcome = await asyncio.to_thread(runner.conclude, workdir, run, prep.facts)
        if not outcome.success or outcome.change_set is not None or not spec.dry_run:
            return outcome
        assert prep.base_manifest is not None
        async with self.sessions() as session:
            steps = await queries.get_steps(session, task_id=spec.id)
        commands = [step.tool_call["args"]["cmd"] for step in steps
                    if step.ok and step.tool_call and step.tool_call.get("tool") == "shell"]
        change_set = await asyncio.to_thread(predict, self.snapshots, scope=workspace, base_manifest=prep.base_manifest,
                                             scratch=workdir, commands=commands, task_id=spec.id)
        if not change_set.paths:
            return Outcome(True, f"dry run: no file changes predicted ({outcome.summary})",
                           {**outcome.result, "change_set": change_set.as_dict()})
        return Outcome(True, f"dry run: {len(change_set.files)} file changes predicted; approve to apply them",
                       outcome.result, change_set.as_dict())

    async def settle(self, spec: TaskSpec, workspace: Path, decided: ChangeSetDecision) -> dict[str, Any]:
        """Apply an approved change set (raises RollbackError, TemplateFailed when it cannot)
        or keep a rejected one in the task; the task's result."""
        change_set = decided.change_set
        kept = {key: change_set[key] for key in ("apply", "files", "commands", "branch") if key in change_set}
        if not decided.approved:
            return {"applied": False, "reason": decided.reason, "change_set": kept, "diff": change_set.get("diff")}
        if change_set["apply"] == "git_branch":
            async with self.sessions() as session:
                done = await queries.journal_entry(session, task_id=spec.id, kind=PREPARED)
            workdir = Path(done.detail["workdir"]) if done else workspace
            applied = await asyncio.to_thread(apply_git_branch, change_set, workdir, patches_dir=self.patches_dir,
                                              task_id=spec.id)
            return {"applied": True, **applied, "change_set": kept}
        before = await asyncio.to_thread(self.snapshots.create, workspace, task_id=spec.id)
        await self._save(before)   # the apply itself can be rolled back to this
        report = await asyncio.to_thread(apply_files, self.snapshots, ChangeSet.from_dict(change_set))
        return {"applied": True, "snapshot": before.id, "report": report.summary(), "change_set": kept}

    def discard_scratch(self, spec: TaskSpec) -> None:
        if spec.dry_run:
            shutil.rmtree(self.scratch_dir / spec.id, ignore_errors=True)

    async def _save(self, record: Any) -> None:
        async with self.sessions.begin() as session:
            await rollback_journal.save(session, record)
