"""Task templates as rules name them: the parameters each needs and the goal it sets. What
a template does around the agent's loop (prepare a workspace, verify, apply on approval)
is the worker's part, in ``agents/templates.py``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_TEST_CMD = "python3 -m pytest -q"


class CiRemediation(BaseModel):
    """A CI failure: reproduce it, repair the code, verify, and ask to apply the fix."""

    model_config = ConfigDict(extra="forbid")
    repo: str = Field(min_length=1, description="local repository path or git URL")
    commit: str | None = Field(default=None, description="the failing commit (default: HEAD)")
    test_cmd: str = Field(default=DEFAULT_TEST_CMD, description="the command CI ran")
    branch_prefix: str = Field(default="ha/fix-", pattern=r"^[\w./-]{1,40}$")
    failure: str = Field(default="", max_length=4000, description="what CI reported")

    def goal(self) -> str:
        where = f" at commit {self.commit}" if self.commit else ""
        reported = f"\nCI reported:\n{self.failure}" if self.failure else ""
        return (f"CI failed for {self.repo}{where}: `{self.test_cmd}` fails. Find the bug in the code and fix it so "
                f"the tests pass; do not edit the tests.{reported}")


class DiskPressure(BaseModel):
    """Free space under declared roots within policy, and report what was freed."""

    model_config = ConfigDict(extra="forbid")
    roots: list[str] = Field(min_length=1, description="directories the task may clean, below allowed roots")
    older_than_days: int = Field(default=7, ge=0, description="rotated logs older than this may go")
    action: Literal["compress", "delete"] = "compress"
    truncate: list[str] = Field(default_factory=list, description="files (relative to a root) to truncate")
    host: str = ""

    def goal(self) -> str:
        verb = "gzip" if self.action == "compress" else "delete"
        truncate = f" Truncate (do not delete) {', '.join(self.truncate)}." if self.truncate else ""
        host = f" on {self.host}" if self.host else ""
        return (f"Disk space is low{host}. Report what uses the space in this workspace, then {verb} rotated logs "
                f"(names like *.log.1, *.log.2.gz, *-YYYYMMDD.log) older than {self.older_than_days} days; keep "
                f"current logs.{truncate}")


class ServiceHealth(BaseModel):
    """Probe a service; when the probe fails, diagnose and propose a fix for approval."""

    model_config = ConfigDict(extra="forbid")
    probe: str = Field(min_length=1, description="a shell command that exits 0 when healthy")
    service: str = Field(default="", description="the service's name, for restarts")
    logs: list[str] = Field(default_factory=list, description="log files to read when it fails")

    def goal(self) -> str:
        logs = f" Read {', '.join(self.logs)} to find why." if self.logs else ""
        name = self.service or "the service"
        return (f"The health probe `{self.probe}` of {name} fails.{logs} Propose a fix (a restart of {name} or a "
                f"config correction), then run the probe again to verify.")


TEMPLATES: dict[str, type[BaseModel]] = {
    "ci_remediation": CiRemediation, "disk_pressure": DiskPressure, "service_health": ServiceHealth,
}


class TemplateError(ValueError):
    """Unknown template, or parameters it does not accept."""


def template_params(name: str, params: dict[str, Any]) -> BaseModel:
    """The validated parameters of template ``name``."""
    if name not in TEMPLATES:
        raise TemplateError(f"unknown template {name!r}; valid: {', '.join(sorted(TEMPLATES))}")
    try:
        return TEMPLATES[name].model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())
        raise TemplateError(f"template {name}: {problems}") from exc


def goal_of(name: str, params: dict[str, Any]) -> str:
    return template_params(name, params).goal()  # type: ignore[attr-defined]


def default_workspace(name: str, params: dict[str, Any]) -> str | None:
    """Where the template works when its rule names no workspace: a disk cleanup works in
    its first root; the others get a fresh workspace."""
    checked = template_params(name, params)
    return checked.roots[0] if isinstance(checked, DiskPressure) else None
