"""Database rows. Schemas exposed over the API live in ``api/schemas.py``, apart from these."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The outbox: set once JetStream has acknowledged the publish.
    published_at: Mapped[datetime | None]
    routing: Mapped[list[Any] | None]   # every rule's decision on this event, and why


class TaskRow(Base):
    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str | None] = mapped_column(ForeignKey("events.id"), index=True)
    goal: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24), index=True)
    workspace: Mapped[str | None] = mapped_column(Text)
    queue: Mapped[str] = mapped_column(String(40), default="default")
    requested_by: Mapped[str | None] = mapped_column(String(80))
    isolation: Mapped[str | None] = mapped_column(String(40))
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    # A shell command run after each state-changing action; when it fails, the action is undone.
    check_cmd: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[datetime | None]   # asked while running: the worker stops it
    rule: Mapped[str | None] = mapped_column(String(80))            # the rule that made it
    template: Mapped[str | None] = mapped_column(String(40))        # ci_remediation, disk_pressure, ...
    params: Mapped[dict[str, Any] | None]                           # the template's parameters
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)   # work on a scratch copy, apply on approval
    priority: Mapped[int] = mapped_column(Integer, default=0)
    policy: Mapped[str | None] = mapped_column(Text)                # a rule's policy file (profile)
    budgets: Mapped[dict[str, Any] | None]                          # max_steps, max_seconds of this task
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]   # its worker's last sign of life while running
    # What it acts on (a host, a repository; default its workspace): one task at a time each.
    resource: Mapped[str | None] = mapped_column(String(200))
    rule_concurrency: Mapped[int | None]   # at most this many tasks of its rule run at once
    waiting_for: Mapped[str | None] = mapped_column(Text)   # why a delivered task has not started yet


class StepRow(Base):
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("task_id", "n"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    n: Mapped[int] = mapped_column(Integer)
    tool_call: Mapped[dict[str, Any] | None]
    decision: Mapped[str] = mapped_column(String(24))
    policy: Mapped[dict[str, Any] | None]
    model: Mapped[dict[str, Any] | None]
    observation: Mapped[str] = mapped_column(Text)
    ok: Mapped[bool] = mapped_column(Boolean)
    candidates: Mapped[list[Any]]
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    timings: Mapped[dict[str, Any]]
    started_at: Mapped[datetime]
    duration_s: Mapped[float] = mapped_column(Float)
    snapshot_id: Mapped[str | None] = mapped_column(String(40))   # taken before the step's action
    rollback: Mapped[dict[str, Any] | None]                       # the action was undone: how


class JournalRow(Base):
    """What happened, in order: bus hops, incidents, decisions. Append-only."""

    __tablename__ = "journal"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(60), index=True)
    task_id: Mapped[str | None] = mapped_column(String(40), index=True)
    event_id: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]]


class SnapshotRow(Base):
    """A snapshot of a scope; its manifest and contents live in the data dir's object store."""

    __tablename__ = "snapshots"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    task_id: Mapped[str | None] = mapped_column(String(40), index=True)
    step: Mapped[int | None] = mapped_column(Integer)
    scope: Mapped[str] = mapped_column(Text)
    manifest: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int] = mapped_column(Integer)
    files_read: Mapped[int] = mapped_column(Integer)
    bytes_stored: Mapped[int] = mapped_column(BigInteger)
    duration_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(index=True)
    expired_at: Mapped[datetime | None]   # past retention: its contents may be collected


class CompensationRow(Base):
    """The command that undoes an action whose effect lies outside files."""

    __tablename__ = "compensations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str | None] = mapped_column(String(40), index=True)
    step: Mapped[int | None] = mapped_column(Integer)
    snapshot_id: Mapped[str | None] = mapped_column(String(40))
    command: Mapped[str] = mapped_column(Text)
    undoes: Mapped[str] = mapped_column(Text)
    registered_at: Mapped[datetime]
    ran_at: Mapped[datetime | None]
    ok: Mapped[bool | None] = mapped_column(Boolean)
    output: Mapped[str | None] = mapped_column(Text)


class RestoreRow(Base):
    """One rollback to a snapshot: why, by whom, and what it changed or why it could not."""

    __tablename__ = "restores"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[str] = mapped_column(String(40), index=True)
    task_id: Mapped[str | None] = mapped_column(String(40), index=True)
    step: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(40))
    requested_by: Mapped[str | None] = mapped_column(String(80))
    ok: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]


class ApprovalRow(Base):
    """A held call waiting for (or given) a person's decision, with what they need to decide."""

    __tablename__ = "approvals"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(40), index=True)
    step: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)   # pending, approved, rejected, expired
    tool_call: Mapped[dict[str, Any]]
    diff: Mapped[str | None] = mapped_column(Text)                # writes and edits: what would change
    risk: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]]
    scores: Mapped[dict[str, Any]]
    snapshot_id: Mapped[str | None] = mapped_column(String(40))   # the workspace as the person saw it
    requested_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    resumed_at: Mapped[datetime | None]                           # the task picked the decision up
    kind: Mapped[str] = mapped_column(String(16), default="call")   # call (a held tool call) or change_set
    change_set: Mapped[dict[str, Any] | None]                     # kind change_set: what approval applies


class CooldownRow(Base):
    """A rule may not fire again for this resource before ``until``."""

    __tablename__ = "cooldowns"
    rule: Mapped[str] = mapped_column(String(80), primary_key=True)
    resource: Mapped[str] = mapped_column(String(200), primary_key=True)
    until: Mapped[datetime]
    event_id: Mapped[str | None] = mapped_column(String(40))


class FenceRow(Base):
    """The highest fencing token seen for a resource: writes with a lower one are refused."""

    __tablename__ = "fences"
    resource: Mapped[str] = mapped_column(String(200), primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger)


class ScheduleRow(Base):
    """A cron schedule whose firings are ``cron`` events; from the rules file or the API."""

    __tablename__ = "schedules"
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]]
    misfire_grace_s: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean)
    origin: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TokenRow(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
