"""Rollback as a task uses it: a snapshot before each state-changing action, the
compensation an action registers, and a restore (files, then compensations newest first)
back to a snapshot; each journaled as it happens through the ``journal`` callback."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hybrid_agent.rollback.compensations import Compensation, run_compensations
from hybrid_agent.rollback.errors import RollbackError
from hybrid_agent.rollback.snapshots import Snapshot, SnapshotStore

CommandRunner = Callable[[str], tuple[bool, str]]   # a shell command -> (ok, output)


@dataclass(frozen=True)
class Restore:
    """One rollback as journaled: to which snapshot, why, and what it changed (or why not)."""

    snapshot_id: str
    reason: str       # action_failed, check_failed, task_failed, task_cancelled, redelivery, on_demand
    ok: bool
    report: dict[str, Any] | None
    error: str | None
    started_at: datetime
    task_id: str | None = None
    step: int | None = None
    requested_by: str | None = None
    finished_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def describe(self) -> str:
        if not self.ok:
            return f"rollback to {self.snapshot_id} failed: {self.error}"
        report = self.report or {}
        done = [f"{report[k]} {word}" for k, word in (("created", "recreated"), ("modified", "rewritten"),
                                                     ("removed", "removed"), ("metadata", "mode fixed"))
                if report.get(k)]
        undone = len(report.get("compensations", []))
        if undone:
            done.append(f"{undone} compensation{'s' * (undone > 1)} run")
        return f"rolled back to {self.snapshot_id}: {', '.join(done) or 'nothing had changed'}"


RollbackRecord = Snapshot | Compensation | Restore


def roll_back(store: SnapshotStore, snapshot: Snapshot, *, compensations: Sequence[Compensation],
              run: CommandRunner | None, reason: str, requested_by: str | None = None,
              step: int | None = None) -> Restore:
    """Restore ``snapshot``'s files, then run ``compensations`` newest first. The caller
    holds the scope's lease. A failure is the returned record's ``error``, not an exception."""
    started = datetime.now(timezone.utc)
    try:
        report = store.restore(snapshot.manifest).summary()
        if compensations:
            if run is None:
                raise RollbackError(f"{len(compensations)} compensations to run and no sandbox to run them in")
            report["compensations"] = [r.record() for r in run_compensations(compensations, run)]
    except (RollbackError, OSError) as exc:
        return Restore(snapshot.id, reason, False, None, f"{type(exc).__name__}: {exc}", started,
                       snapshot.task_id, step, requested_by)
    return Restore(snapshot.id, reason, True, report, None, started, snapshot.task_id, step, requested_by)


class TaskRollback:
    """A task's snapshots of its workspace and its registered compensations, for its loop."""

    def __init__(self, store: SnapshotStore, *, scope: Path, task_id: str | None,
                 journal: Callable[[RollbackRecord], None], run: CommandRunner) -> None:
        self.store = store
        self.scope = scope
        self.task_id = task_id
        self.journal = journal
        self.run = run
        self.pending: list[Compensation] = []   # registered and not yet run

    def before(self, step: int) -> Snapshot:
        """Snapshot the scope before the state-changing action of ``step``; journaled before
        the action runs, so a worker that dies mid-action leaves it for the next one."""
        snapshot = self.store.create(self.scope, task_id=self.task_id, step=step)
        self.journal(snapshot)
        return snapshot

    def register(self, snapshot: Snapshot, commands: Sequence[str], *, undoes: str) -> None:
        for command in commands:
            compensation = Compensation(command, undoes, self.task_id, snapshot.step, snapshot.id)
            self.journal(compensation)
            self.pending.append(compensation)

    def undo(self, snapshot: Snapshot, *, reason: str) -> Restore:
        """Back to ``snapshot``: its files, and the compensations registered since it."""
        since = [c for c in self.pending if (c.step or 0) >= (snapshot.step or 0)]
        restore = roll_back(self.store, snapshot, compensations=since, run=self.run, reason=reason,
                            step=snapshot.step)
        self.pending = [c for c in self.pending if c not in since]
        self.journal(restore)
        return restore
