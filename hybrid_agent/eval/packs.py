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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hybrid_agent.policies.preflight import SANDBOX_PATH

Split = Literal["train", "test"]


R = TypeVar("R")


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
    tasks = read_records(path, parse=_parse_line, key=lambda task: task.id, error=PackError,
                         names=("task pack", "task id", "tasks"))
    return [t for t in tasks if split is None or t.split == split]


def read_records(path: Path, *, parse: Callable[[Path, int, str], R], key: Callable[[R], str],
                 error: type[Exception], names: tuple[str, str, str]) -> list[R]:
    """The JSONL file's records in order, blank lines skipped: ``error`` names the file
    that cannot be read, the line whose key repeats, or a file with none. ``names``: what
    the file, the key and the records are called in those messages."""
    file_name, key_name, plural = names
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise error(f"cannot read {file_name} {path}: {exc.strerror}") from exc
    records: list[R] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = parse(path, number, line)
        if key(record) in seen:
            raise error(f"{path}:{number}: {key_name} {key(record)!r} appears twice")
        seen.add(key(record))
        records.append(record)
    if not records:
        raise error(f"{file_name} {path} holds no {plural}")
    return records


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
