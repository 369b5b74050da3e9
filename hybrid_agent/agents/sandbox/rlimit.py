"""The fallback sandbox, which needs nothing installed: the confined subprocess as it is
(rlimits, a pids cgroup where one can be made, a scrubbed environment, every process
killed at the end). It isolates neither the filesystem nor the network; the bubblewrap
sandbox adds that behind the same interface, and ``isolation`` records which one ran."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hybrid_agent.agents.sandbox.base import CommandResult, SandboxLimits
from hybrid_agent.agents.sandbox.cgroup import pids_cgroups_work
from hybrid_agent.agents.sandbox.process import isolation_name, run_confined


class RlimitSandbox:
    name = "rlimit"

    def __init__(self, max_output_chars: int, limits: SandboxLimits = SandboxLimits()) -> None:
        self._max_output_chars = max_output_chars
        self._limits = limits
        self.isolation = isolation_name(self.name, pids_cgroups_work())

    def run(self, argv: Sequence[str], *, cwd: Path, timeout_s: float) -> CommandResult:
        return run_confined(argv, cwd=cwd, timeout_s=timeout_s, limits=self._limits,
                            max_output_chars=self._max_output_chars, sandbox=self.name)
