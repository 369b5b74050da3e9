"""Request and response bodies, apart from the database rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hybrid_agent.bus.messages import QUEUE_PATTERN


def no_nul(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL, and no goal, path or command needs one."""
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    goal: str = Field(min_length=1, max_length=4000, description="what to achieve, in plain language")
    workspace: str | None = Field(default=None, max_length=4096,
                                  description="directory to work in; must lie under an allowed root")
    check: str | None = Field(default=None, min_length=1, max_length=2000,
                              description="shell command run in the workspace after every change; when it "
                                          "fails, the change is rolled back")
    dry_run: bool = Field(default=False, description="work on a scratch copy of the workspace; the result is the "
                          "predicted change set, applied only when an approver approves it")
    queue: str = Field(default="default", pattern=QUEUE_PATTERN, description="the queue whose workers run it")
    priority: int = Field(default=0, ge=0, le=9, description="0-3 normal, 4-6 high, 7-9 urgent: a worker takes "
                          "the most urgent waiting task first")

    _no_nul = field_validator("goal", "workspace", "check")(no_nul)


class TaskCreated(BaseModel):
    id: str
    status: str


class TaskCancelled(BaseModel):
    id: str
    status: str = Field(description="cancelled; or running, until its worker stops it before its next step")
    rollback: dict[str, Any] | None = Field(default=None, description="what undoing its changes did, if any")


class StepOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    n: int
    tool_call: dict[str, Any] | None
    decision: str
    policy: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    observation: str
    ok: bool
    candidates: list[dict[str, Any]]
    prompt_tokens: int
    timings: dict[str, float]
    started_at: datetime
    duration_s: float
    snapshot_id: str | None = None
    rollback: dict[str, Any] | None = None


class JournalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: datetime
    kind: str
    event_id: str | None
    detail: dict[str, Any]


class TaskSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    goal: str
    status: str
    workspace: str | None
    requested_by: str | None
    isolation: str | None
    deliveries: int
    result: dict[str, Any] | None
    error: str | None
    check_cmd: str | None = None
    event_id: str | None = Field(default=None, description="the event that started it (GET /api/events/{id})")
    rule: str | None = Field(default=None, description="the rule that started it (none: a user submission)")
    template: str | None = None
    params: dict[str, Any] | None = None
    dry_run: bool = False
    queue: str = "default"
    priority: int = 0
    waiting_for: str | None = Field(default=None, description="what a delivered task waits for before it starts "
                                    "(its resource, its workspace, a free slot of its rule)")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TaskOut(TaskSummary):
    steps: list[StepOut]
    journal: list[JournalOut]


class LaneOut(BaseModel):
    queue: str
    band: str = Field(description="urgent (priority 7-9), high (4-6) or normal (0-3)")
    waiting: int = Field(description="tasks no worker has taken yet")
    in_progress: int = Field(description="tasks a worker holds (running, or waiting there for a lease)")
    served: bool = Field(description="false: no worker has served this queue, and its tasks wait for one")
    last_active: datetime | None = Field(description="when a worker last took a task of it")


class ErrorOut(BaseModel):
    detail: Any


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    source: str
    kind: str
    dedup_key: str
    payload: dict[str, Any]
    created_at: datetime
    published_at: datetime | None = Field(description="when the bus acknowledged it; null: it waits in the outbox")
    routing: list[dict[str, Any]] | None = Field(
        description="every rule's decision on it: rule, matched, why, task_id (null: not routed yet)")


class SnapshotOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    task_id: str | None
    step: int | None
    scope: str
    entries: int
    files_read: int
    bytes_stored: int
    duration_s: float
    created_at: datetime
    expired_at: datetime | None


class RestoreOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    snapshot_id: str
    task_id: str | None
    reason: str
    requested_by: str | None
    ok: bool
    report: dict[str, Any] | None
    error: str | None
    started_at: datetime
    finished_at: datetime


class ApprovalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    task_id: str
    kind: str = Field(default="call", description="call: a held tool call; change_set: a dry run's predicted "
                      "changes or a CI fix, applied on approval")
    change_set: dict[str, Any] | None = Field(default=None, description="kind change_set: files, commands, diff")
    step: int
    status: str = Field(description="pending, approved, rejected or expired")
    tool_call: dict[str, Any]
    diff: str | None = Field(description="for write_file and edit: the unified diff it would make")
    risk: str
    reasons: list[str]
    scores: dict[str, Any] = Field(description="what the models made of the call: EBM success estimate and "
                                               "energy, HRM risk, the LLM's mean log-probability")
    snapshot_id: str | None = Field(description="the workspace as it was when the call was held")
    requested_by: str | None
    created_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=2000, description="why; the model reads it after a rejection")

    _no_nul = field_validator("reason")(no_nul)


class HookAccepted(BaseModel):
    """A webhook delivery stored as events (published, or waiting in the outbox for the bus)."""
    event_ids: list[str] = Field(description="the events this delivery made (Alertmanager: one per alert)")
    event_id: str = Field(description="the first of them")


class HookAnswered(BaseModel):
    """A webhook delivery that made no new event; one of the fields says why."""
    pong: bool | None = Field(default=None, description="GitHub's ping, answered")
    ignored: str | None = Field(default=None, description="why the delivery is not an event (another event "
                                                          "type, action or conclusion)")
    duplicate: bool | None = Field(default=None, description="a replayed delivery id: nothing new stored")
    event_id: str | None = Field(default=None, description="with duplicate: the event stored the first time")


# Schedules. (Imports here: this part was added after the rest.)
import json  # noqa: E402

from hybrid_agent.triggers.cron import parse_cron, zone  # noqa: E402


def _valid_cron(value: str) -> str:
    parse_cron(value, "UTC")   # the fields alone; the zone is checked on its own field
    return value


def _valid_zone(value: str) -> str:
    zone(value)
    return value


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$")
    cron: str = Field(max_length=120, description="5 fields (minute hour day month day-of-week; weekday 0 and 7 "
                                                  "are Sunday), or 6 with seconds first: */5 * * * * *")
    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone the fields are read in")
    kind: str = Field(default="tick", pattern=r"^[a-z][a-z0-9_-]{0,79}$", description="each firing is an event "
                                                                                  "cron.<kind>")
    payload: dict[str, Any] = Field(default_factory=dict, description="the event's payload; the firing adds "
                                                                      "schedule and scheduled_for")
    misfire_grace_s: int = Field(default=60, ge=1, le=30 * 86400, description="a run missed (nothing was running) "
                                 "still fires this long after its time")
    enabled: bool = True

    _cron = field_validator("cron")(_valid_cron)
    _zone = field_validator("timezone")(_valid_zone)

    @field_validator("payload")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, allow_nan=False)) > 65536:   # NaN: not JSON, PostgreSQL refuses it
            raise ValueError("must be at most 64 KiB as JSON")
        return value


class ScheduleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    cron: str
    timezone: str
    kind: str
    payload: dict[str, Any]
    misfire_grace_s: int
    enabled: bool
    origin: str = Field(description="rules (the rules file: change it there) or api")
    created_by: str | None
    created_at: datetime
    next_run_at: datetime | None = Field(default=None, description="when it fires next; none when disabled")
