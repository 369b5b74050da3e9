"""Request and response bodies, apart from the database rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TaskOut(TaskSummary):
    steps: list[StepOut]
    journal: list[JournalOut]


class ErrorOut(BaseModel):
    detail: Any


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
