"""The one way every sandbox runs a command: a subprocess in its own session and its own
pids cgroup, with rlimits, stdin from /dev/null and a scrubbed environment; output read
with a bound; on timeout SIGTERM, a grace, then SIGKILL; and at the end every process it
left behind killed. A sandbox differs only in the argv it passes (bubblewrap wraps it)."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import subprocess
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from hybrid_agent.agents.sandbox.base import CommandResult, SandboxLimits
from hybrid_agent.agents.sandbox.cgroup import PidsCgroup
from hybrid_agent.agents.sandbox.output import HeadTailBuffer, OutputPipe

# What a sandboxed command finds on PATH; preflight looks for programs in the same places.
from hybrid_agent.policies.preflight import SANDBOX_PATH

_CPU_SLACK_S = 5                        # CPU seconds allowed beyond the wall-clock timeout
_KILL_GRACE_S = 1.0                     # between SIGTERM and SIGKILL on timeout
_TICK_S = 0.05                          # how often a quiet command is checked for exit


def isolation_name(sandbox: str, has_cgroup: bool) -> str:
    """The sandbox's name, saying so when processes were bounded only by RLIMIT_NPROC
    (which root ignores) and setsid could escape the final kill."""
    return sandbox if has_cgroup else f"{sandbox}, no pids cgroup"


def run_confined(argv: Sequence[str], *, cwd: Path, timeout_s: float, limits: SandboxLimits,
                 max_output_chars: int, sandbox: str) -> CommandResult:
    started = time.monotonic()
    cgroup = PidsCgroup.create(limits.max_processes)
    isolation = isolation_name(sandbox, cgroup is not None)
    try:
        exit_code, output, timed_out, truncated = _run(argv, cwd, timeout_s, limits, max_output_chars, cgroup)
    finally:
        if cgroup is not None:
            # Kills what left the process group by setsid, which the group kill missed.
            cgroup.close()
    return CommandResult(exit_code=exit_code, output=output, timed_out=timed_out, truncated=truncated,
                         seconds=time.monotonic() - started, isolation=isolation)


def _run(argv: Sequence[str], cwd: Path, timeout_s: float, limits: SandboxLimits, max_output_chars: int,
         cgroup: PidsCgroup | None) -> tuple[int | None, str, bool, bool]:
    """(exit code, output, timed out, truncated)."""
    started = time.monotonic()
    buffer = HeadTailBuffer(max_output_chars)
    try:
        # preexec_fn is documented as unsafe with threads because it runs Python after
        # fork; it only makes system calls, and Python 3.11 has no other way to set
        # rlimits or join a cgroup before exec.
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=scrubbed_env(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=partial(_confine, limits, math.ceil(timeout_s) + _CPU_SLACK_S, cgroup),
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:   # ValueError: a NUL in argv
        return None, f"cannot start the command: {exc}", False, False
    assert proc.stdout is not None
    with proc.stdout:
        pipe = OutputPipe(proc.stdout.fileno(), buffer)
        exited = _collect_until_exit(proc, pipe, started + timeout_s)
        if not exited:
            _terminate_group(proc, pipe)
        # No process outlives its call: what ignored SIGTERM, and background jobs left by
        # a command that finished.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        pipe.drain()
    output, truncated = buffer.text()
    exit_code = _shell_exit_code(proc.returncode) if exited else None
    return exit_code, output, not exited, truncated


def scrubbed_env(cwd: Path) -> dict[str, str]:
    """Nothing is inherited, so no secret in the agent's environment reaches a command.
    No bytecode is written: a .pyc is checked by its source's size and mtime in whole
    seconds, so an edit of the same size in the same second as a test run would be run
    stale (and .pyc files would churn every snapshot)."""
    return {"PATH": SANDBOX_PATH, "HOME": str(cwd), "LANG": "C.UTF-8", "TMPDIR": "/tmp",
            "PYTHONDONTWRITEBYTECODE": "1"}


def _lower_limit(limit: int, soft: int, hard: int) -> None:
    """Set a limit, never above the current hard limit (raising it would fail)."""
    _, current_hard = resource.getrlimit(limit)
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(limit, (soft, hard))


def _confine(limits: SandboxLimits, cpu_s: int, cgroup: PidsCgroup | None) -> None:
    """Runs in the child between fork and exec; everything the command starts inherits it.
    RLIMIT_CPU's soft limit sends SIGXCPU (the shell reports "CPU time limit exceeded"),
    the hard one a second later SIGKILL."""
    if cgroup is not None:
        cgroup.join()
    else:
        _lower_limit(resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes)
    _lower_limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)
    _lower_limit(resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes)
    _lower_limit(resource.RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes)


def _collect_until_exit(proc: subprocess.Popen[bytes], pipe: OutputPipe, deadline: float) -> bool:
    """Read output until the command exits (True) or the deadline passes (False). The end
    is the command's exit, not the pipe's EOF: a background job may hold the pipe."""
    while proc.poll() is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if pipe.is_open:
            pipe.pump(min(remaining, _TICK_S))
            continue
        try:
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            return False
    return True


def _terminate_group(proc: subprocess.Popen[bytes], pipe: OutputPipe) -> None:
    """SIGTERM the group and give it a short grace to exit, still reading its output (a
    process blocked on a full pipe cannot exit); the caller's SIGKILL takes the rest."""
    _signal_group(proc.pid, signal.SIGTERM)
    grace_end = time.monotonic() + _KILL_GRACE_S
    while (remaining := grace_end - time.monotonic()) > 0:
        proc.poll()   # reap the leader, whose zombie would keep the group alive
        if not _group_exists(proc.pid):
            return
        pipe.pump(min(remaining, _TICK_S))


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):   # the group is already gone
        os.killpg(pgid, signum)


def _group_exists(pgid: int) -> bool:
    """Whether any process of the group is left. Zombies count: where PID 1 does not reap
    orphans this stays true until the grace period ends, which only costs that wait."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _shell_exit_code(returncode: int) -> int:
    """Popen reports death by signal N as -N; shells say 128+N, which models know."""
    return 128 - returncode if returncode < 0 else returncode
