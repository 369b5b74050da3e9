"""Choosing the sandbox by name: ``bwrap``, ``rlimit``, or ``auto`` (bubblewrap where it
works, else the rlimit fallback, which the task's record then shows)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hybrid_agent.agents.sandbox.base import Sandbox, SandboxLimits
from hybrid_agent.agents.sandbox.bwrap import BwrapSandbox
from hybrid_agent.agents.sandbox.rlimit import RlimitSandbox

NAMES = ("auto", "bwrap", "rlimit")
_PROBE_TIMEOUT_S = 10
_INSTALL_HINT = "install bubblewrap (Debian: apt-get install bubblewrap)"


class SandboxUnavailable(RuntimeError):
    """The configured sandbox cannot run here; the message names the setting."""


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def bwrap_problem(bwrap: str | None, limits: SandboxLimits) -> str | None:
    """Why bubblewrap cannot run commands here, or None when it can. Found is not enough:
    user namespaces may be disabled, or refused by a seccomp or AppArmor policy."""
    if bwrap is None:
        return "no bwrap on PATH"
    with tempfile.TemporaryDirectory() as scratch:
        result = BwrapSandbox(500, limits, bwrap).run(["true"], cwd=Path(scratch), timeout_s=_PROBE_TIMEOUT_S)
    if result.exit_code == 0:
        return None
    return f"{bwrap} failed: {result.output.strip() or f'exit {result.exit_code}'}"


def make_sandbox(name: str, *, max_output_chars: int, limits: SandboxLimits = SandboxLimits(),
                 require_bwrap: bool = False) -> Sandbox:
    if name not in NAMES:
        raise ValueError(f"unknown sandbox {name!r}; valid: {', '.join(NAMES)}")
    if name == "rlimit":
        if require_bwrap:
            raise SandboxUnavailable("HA_REQUIRE_BWRAP is true but HA_SANDBOX is rlimit; use bwrap or auto")
        return RlimitSandbox(max_output_chars, limits)
    bwrap = find_bwrap()
    problem = bwrap_problem(bwrap, limits)
    if problem is None:
        assert bwrap is not None
        return BwrapSandbox(max_output_chars, limits, bwrap)
    if require_bwrap:
        raise SandboxUnavailable(f"HA_REQUIRE_BWRAP is true but bubblewrap is not usable ({problem}); {_INSTALL_HINT}")
    if name == "bwrap":
        raise SandboxUnavailable(f"HA_SANDBOX is bwrap but bubblewrap is not usable ({problem}); "
                                 f"{_INSTALL_HINT}, or set HA_SANDBOX=auto to fall back to rlimit")
    return RlimitSandbox(max_output_chars, limits)
