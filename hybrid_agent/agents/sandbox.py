"""Running one shell command for the agent, isolated as far as the host allows.

A ``Sandbox`` runs ``/bin/bash -c CMD`` in a directory with a timeout and returns a
``CommandResult``; it never raises for the command's failure. ``RlimitSandbox`` is the
fallback that needs nothing installed: a subprocess with resource limits, a scrubbed
environment and its whole process group killed on timeout. It does not isolate the
filesystem or the network, which is what a bubblewrap sandbox adds behind the same
interface; ``CommandResult.isolation`` records which one ran.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

# What a sandboxed command finds on PATH; preflight looks for programs in the same places.
from hybrid_agent.policies.preflight import SANDBOX_PATH

_CPU_SLACK_S = 5                        # CPU seconds allowed beyond the wall-clock timeout
_ADDRESS_SPACE_BYTES = 2 * 1024**3
_FILE_SIZE_BYTES = 256 * 1024**2
_MAX_PROCESSES = 256
_KILL_GRACE_S = 1.0                     # between SIGTERM and SIGKILL on timeout
_DRAIN_S = 0.5                          # reading what is left in the pipe after the end
_TICK_S = 0.05                          # how often a quiet command is checked for exit
_CHUNK = 65536


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None    # None when timed out or not started; 128+N when killed by signal N
    output: str              # stdout and stderr interleaved, truncated
    timed_out: bool
    truncated: bool
    seconds: float
    isolation: str           # the sandbox that ran it, for the task's record


class Sandbox(Protocol):
    name: str

    def run(self, cmd: str, *, cwd: Path, timeout_s: float) -> CommandResult:
        """Run ``cmd`` with bash in ``cwd``; never raises for the command's failure."""
        ...


def _truncation_marker(omitted_bytes: int) -> str:
    return f"\n[... output truncated: {omitted_bytes} more bytes ...]\n"


def _decode(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


class HeadTailBuffer:
    """The first and last ``max_chars`` bytes of a stream of any length: memory stays
    bounded, and ``text()`` shows both ends, where commands print what matters (what
    they did first, and the error they died with)."""

    def __init__(self, max_chars: int) -> None:
        self._max = max_chars
        self._head = bytearray()
        self._tail = bytearray()
        self._gap = False        # whether bytes between head and tail were dropped
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = max(self._max - len(self._head), 0)
        self._head += data[:room]
        self._tail += data[room:]
        # Trimming only at twice the size keeps the copying amortised.
        if len(self._tail) > 2 * self._max:
            del self._tail[: -self._max]
            self._gap = True

    def skip(self, size: int) -> None:
        """Count ``size`` bytes that were never read (the middle of a large file)."""
        self.total += size
        self._tail.clear()
        self._gap = True

    def text(self) -> tuple[str, bool]:
        """The kept text, at most ``max_chars`` long including the marker; and whether
        anything was cut."""
        if self.total <= self._max:
            return _decode(self._head), False
        # Without a gap the last bytes may reach back into the head.
        tail = self._tail if self._gap else self._head + self._tail
        keep = max(self._max - len(_truncation_marker(self.total)), 0)
        head_size = keep // 2
        tail_size = keep - head_size
        omitted = self.total - head_size - tail_size
        head_text = _decode(self._head[:head_size])
        tail_text = _decode(tail[max(len(tail) - tail_size, 0):])
        return head_text + _truncation_marker(omitted) + tail_text, True


class _OutputPipe:
    """The read end of the command's stdout, read with timeouts so that neither a silent
    command nor a full pipe can block the caller."""

    def __init__(self, fd: int, buffer: HeadTailBuffer) -> None:
        self._fd = fd
        self._buffer = buffer
        self._poller = select.poll()   # not select.select: that fails on fds >= 1024
        self._poller.register(fd, select.POLLIN)
        self.is_open = True

    def pump(self, timeout_s: float) -> bool:
        """Read one chunk if it arrives within ``timeout_s``; whether one was read."""
        if not self.is_open:
            time.sleep(timeout_s)
            return False
        if not self._poller.poll(timeout_s * 1000):
            return False
        chunk = os.read(self._fd, _CHUNK)
        if not chunk:
            self.is_open = False
            return False
        self._buffer.feed(chunk)
        return True

    def drain(self) -> None:
        """Read what is already in the pipe, bounded in time because a process that
        escaped the group (setsid) could keep writing forever."""
        end = time.monotonic() + _DRAIN_S
        while time.monotonic() < end and self.pump(0):
            pass


def _lower_limit(limit: int, soft: int, hard: int) -> None:
    """Set a limit, never above the current hard limit (raising it would fail)."""
    _, current_hard = resource.getrlimit(limit)
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(limit, (soft, hard))


def _limit_resources(cpu_s: int) -> None:
    """Runs in the child between fork and exec. RLIMIT_CPU's soft limit sends SIGXCPU (the
    shell reports "CPU time limit exceeded"), the hard one a second later SIGKILL.
    RLIMIT_NPROC counts every process and thread of the user, not of this command, and
    the kernel does not enforce it for root at all: the timeout and the process-group
    kill are what bound a fork bomb there."""
    _lower_limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)
    _lower_limit(resource.RLIMIT_AS, _ADDRESS_SPACE_BYTES, _ADDRESS_SPACE_BYTES)
    _lower_limit(resource.RLIMIT_FSIZE, _FILE_SIZE_BYTES, _FILE_SIZE_BYTES)
    _lower_limit(resource.RLIMIT_NPROC, _MAX_PROCESSES, _MAX_PROCESSES)


def _scrubbed_env(cwd: Path) -> dict[str, str]:
    """Nothing is inherited, so no secret in the agent's environment reaches a command.
    /tmp is the shared system one here; bubblewrap would give a private one."""
    return {"PATH": SANDBOX_PATH, "HOME": str(cwd), "LANG": "C.UTF-8", "TMPDIR": "/tmp"}


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


class RlimitSandbox:
    """A subprocess in its own session (so its process group can be killed as a whole)
    with rlimits, stdin from /dev/null and a scrubbed environment. No filesystem or
    network isolation. A process that calls setsid leaves the group and survives the
    kill; bubblewrap's PID namespace closes that gap."""

    name = "rlimit"

    def __init__(self, max_output_chars: int) -> None:
        self._max_output_chars = max_output_chars

    def run(self, cmd: str, *, cwd: Path, timeout_s: float) -> CommandResult:
        started = time.monotonic()
        buffer = HeadTailBuffer(self._max_output_chars)
        try:
            # preexec_fn is documented as unsafe with threads because it runs Python after
            # fork; it only calls setrlimit, and Python 3.11 has no other way to set rlimits.
            proc = subprocess.Popen(
                ["/bin/bash", "-c", cmd],
                cwd=cwd,
                env=_scrubbed_env(cwd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=partial(_limit_resources, math.ceil(timeout_s) + _CPU_SLACK_S),
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:   # ValueError: a NUL in cmd
            return self._result(started, exit_code=None, output=f"cannot start the command: {exc}",
                                timed_out=False, truncated=False)
        assert proc.stdout is not None
        with proc.stdout:
            pipe = _OutputPipe(proc.stdout.fileno(), buffer)
            exited = self._collect_until_exit(proc, pipe, started + timeout_s)
            if not exited:
                self._terminate_group(proc, pipe)
            # No process outlives its call: what ignored SIGTERM, and background jobs left
            # by a command that finished.
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            pipe.drain()
        output, truncated = buffer.text()
        exit_code = None if not exited else _shell_exit_code(proc.returncode)
        return self._result(started, exit_code=exit_code, output=output, timed_out=not exited,
                            truncated=truncated)

    def _result(self, started: float, *, exit_code: int | None, output: str, timed_out: bool,
                truncated: bool) -> CommandResult:
        return CommandResult(exit_code=exit_code, output=output, timed_out=timed_out, truncated=truncated,
                             seconds=time.monotonic() - started, isolation=self.name)

    @staticmethod
    def _collect_until_exit(proc: subprocess.Popen[bytes], pipe: _OutputPipe, deadline: float) -> bool:
        """Read output until the shell exits (True) or the deadline passes (False). The
        end is the shell's exit, not the pipe's EOF: a background job may hold the pipe."""
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

    @staticmethod
    def _terminate_group(proc: subprocess.Popen[bytes], pipe: _OutputPipe) -> None:
        """SIGTERM the group and give it a short grace to exit, still reading its output (a
        process blocked on a full pipe cannot exit); the caller's SIGKILL takes the rest."""
        _signal_group(proc.pid, signal.SIGTERM)
        grace_end = time.monotonic() + _KILL_GRACE_S
        while (remaining := grace_end - time.monotonic()) > 0:
            proc.poll()   # reap the shell, whose zombie would keep the group alive
            if not _group_exists(proc.pid):
                return
            pipe.pump(min(remaining, _TICK_S))


def _shell_exit_code(returncode: int) -> int:
    """Popen reports death by signal N as -N; shells say 128+N, which models know."""
    return 128 - returncode if returncode < 0 else returncode


_SANDBOXES: dict[str, Callable[[int], Sandbox]] = {RlimitSandbox.name: RlimitSandbox}


def make_sandbox(name: str, *, max_output_chars: int) -> Sandbox:
    try:
        factory = _SANDBOXES[name]
    except KeyError:
        raise ValueError(f"unknown sandbox {name!r}; valid: {', '.join(sorted(_SANDBOXES))}") from None
    return factory(max_output_chars)
