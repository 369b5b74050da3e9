"""Task packs: JSONL files of tasks with a setup, a goal and a check (shared/DESIGN.md
"Task packs"). Loading validates every line and names the line and field that is wrong.
Setups and checks are the pack author's trusted bash, run outside the agent's sandbox but
with the sandbox's PATH, so that both see the same programs (the system python3 with
pytest, not this project's virtualenv)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hybrid_agent.policies.preflight import SANDBOX_PATH

Split = Literal["train", "test"]


class PackError(ValueError):
    """A task pack that cannot be used; the message names the file, line and field."""


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    family: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    setup: str
    check: str = Field(min_length=1)
    timeout_s: float = Field(default=120, gt=0, le=3600)
    split: Split = "train"
    tags: tuple[str, ...] = ()


def load_pack(path: Path, *, split: Split | None = None) -> list[Task]:
    """The pack's tasks (of one split when given), in file order."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PackError(f"cannot read task pack {path}: {exc.strerror}") from exc
    tasks: list[Task] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        task = _parse_line(path, number, line)
        if task.id in seen:
            raise PackError(f"{path}:{number}: task id {task.id!r} appears twice")
        seen.add(task.id)
        tasks.append(task)
    if not tasks:
        raise PackError(f"task pack {path} holds no tasks")
    return [t for t in tasks if split is None or t.split == split]


def _parse_line(path: Path, number: int, line: str) -> Task:
    try:
        return Task.model_validate(json.loads(line))
    except json.JSONDecodeError as exc:
        raise PackError(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "line"
        raise PackError(f"{path}:{number}: field {field!r}: {first['msg']}") from exc


@dataclass(frozen=True)
class ScriptResult:
    exit_code: int
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def script_env(workspace: Path) -> dict[str, str]:
    """What setups, checks and reference solutions see: the sandbox's PATH, a fixed
    locale and time zone, the workspace as HOME."""
    return {"PATH": SANDBOX_PATH, "HOME": str(workspace), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
            "PYTHONDONTWRITEBYTECODE": "1", "GIT_CONFIG_NOSYSTEM": "1"}


def run_script(script: str, workspace: Path, *, timeout_s: float = 120) -> ScriptResult:
    """Run a trusted pack script with bash in the workspace; a timeout kills its whole
    process group (a setup's background child included)."""
    proc = subprocess.Popen(["bash", "-c", script], cwd=workspace, env=script_env(workspace), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return ScriptResult(exit_code=-1, output=(output or "")[-4000:], timed_out=True)
    return ScriptResult(exit_code=proc.returncode, output=output[-4000:])
