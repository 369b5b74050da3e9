"""What the sandbox tests share: the sandboxes under test, and processes found by a marker
in their command line (pids printed inside bubblewrap's PID namespace mean nothing
outside it, and a process may leave its group, so a marker is what finds them all)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from hybrid_agent.agents.sandbox import BwrapSandbox, CommandResult, RlimitSandbox, Sandbox, SandboxLimits
from hybrid_agent.agents.sandbox.factory import bwrap_problem, find_bwrap


def make(kind: str, limits: SandboxLimits = SandboxLimits(), max_output_chars: int = 1000) -> Sandbox:
    """A sandbox of ``kind``; bubblewrap must work here (CI installs it): a test that
    needs it fails, never skips, when it does not."""
    if kind == "rlimit":
        return RlimitSandbox(max_output_chars, limits)
    bwrap = find_bwrap()
    problem = bwrap_problem(bwrap, limits)
    assert problem is None, f"bubblewrap is not usable here ({problem}); install the bubblewrap package"
    assert bwrap is not None
    return BwrapSandbox(max_output_chars, limits, bwrap)


def bash(sandbox: Sandbox, cmd: str, cwd: Path, timeout_s: float = 10) -> CommandResult:
    return sandbox.run(["/bin/bash", "-c", cmd], cwd=cwd, timeout_s=timeout_s)


def marker() -> str:
    """A unique number of seconds to sleep: ``sleep MARKER`` runs long, and the marker in
    the command line finds the process (and every shell whose script contains it)."""
    return f"600.{uuid.uuid4().int % 10**9:09d}"


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (where PID 1 does not reap orphans, a
    killed process stays a zombie, which is dead for our purposes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running(mark: str) -> list[int]:
    """Live processes whose command line contains ``mark``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if mark.encode() in cmdline and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def survivors(mark: str) -> list[int]:
    """The marked processes still alive once SIGKILL has had time to land (delivery is
    asynchronous: a killed process may still be exiting when the call returns)."""
    end = time.monotonic() + 5
    while running(mark) and time.monotonic() < end:
        time.sleep(0.05)
    return running(mark)
