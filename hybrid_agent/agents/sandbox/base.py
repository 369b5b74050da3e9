"""What every sandbox shares: the result of a command, the interface, and the limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hybrid_agent.config import Settings

_MIB = 1024**2


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None    # None when timed out or not started; 128+N when killed by signal N
    output: str              # stdout and stderr interleaved, truncated
    timed_out: bool
    truncated: bool
    seconds: float
    isolation: str           # the sandbox that ran it, for the task's record


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 2048 * _MIB          # address space of each process
    file_size_bytes: int = 256 * _MIB        # the largest file a command may write
    max_processes: int = 256                 # processes and threads of one command
    tmp_bytes: int = 256 * _MIB              # bubblewrap's private /tmp
    read_paths: tuple[Path, ...] = (Path("/var/log"),)   # visible read-only under bubblewrap

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        return cls(memory_bytes=settings.sandbox_memory_mb * _MIB,
                   file_size_bytes=settings.sandbox_file_size_mb * _MIB,
                   max_processes=settings.sandbox_max_processes,
                   tmp_bytes=settings.sandbox_tmp_mb * _MIB,
                   read_paths=tuple(settings.sandbox_read_paths))


class Sandbox(Protocol):
    name: str         # the kind: "bwrap" or "rlimit"

    @property
    def isolation(self) -> str:
        """What isolates commands here, for the task's record: the name, and what is
        missing where the host could not provide it."""
        ...

    def run(self, argv: Sequence[str], *, cwd: Path, timeout_s: float) -> CommandResult:
        """Run ``argv`` (a program found on the sandbox's PATH, and its arguments) in
        ``cwd``; never raises for the command's failure."""
        ...
