"""The bubblewrap sandbox: each command runs in new user, PID, network, IPC, UTS and
cgroup namespaces with every capability dropped, so it has no network (not even the
host's loopback), sees only its own processes, and dies with the agent. Its filesystem
is the system read-only, from /etc only what programs need, the configured read-only
paths, a private size-bounded /tmp (and /dev/shm), and the workspace, the one writable
place on disk.

The agent runs as root, and the user namespace maps the sandbox's user to root outside:
file permissions protect nothing there. What is not mounted does not exist in the
sandbox; that is the isolation, hence allowlists rather than hiding what is secret.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hybrid_agent.agents.sandbox.base import CommandResult, SandboxLimits
from hybrid_agent.agents.sandbox.cgroup import pids_cgroups_work
from hybrid_agent.agents.sandbox.process import isolation_name, run_confined

_SANDBOX_ID = "1000"   # the user and group inside; outside they are the agent's own
# Top-level entries programs load from: symlinks into /usr on a merged-/usr system.
_SYSTEM_ENTRIES = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What programs read from /etc: users and groups by name, name resolution, the dynamic
# linker, time zone, certificates, the alternatives many /usr/bin tools link through.
# Never shadow, gshadow, sudoers, ssh/ or ssl/private.
_ETC_ALLOWED = (
    "alternatives", "bash.bashrc", "ca-certificates", "debian_version", "group", "host.conf",
    "hosts", "inputrc", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "magic",
    "magic.mime", "mime.types", "nsswitch.conf", "os-release", "passwd", "profile",
    "protocols", "services", "shells", "ssl/certs", "timezone",
)


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_ENTRIES:
        entry = Path("/", name)
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry), str(entry)]
        elif entry.is_dir():
            args += ["--ro-bind", str(entry), str(entry)]
    for name in _ETC_ALLOWED:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]   # -try: absent ones are skipped
    return args


class BwrapSandbox:
    name = "bwrap"

    def __init__(self, max_output_chars: int, limits: SandboxLimits = SandboxLimits(),
                 bwrap: str = "/usr/bin/bwrap") -> None:
        self._max_output_chars = max_output_chars
        self._limits = limits
        self._bwrap = bwrap
        self._system_mounts = _system_mounts()
        self.isolation = isolation_name(self.name, pids_cgroups_work())

    def run(self, argv: Sequence[str], *, cwd: Path, timeout_s: float) -> CommandResult:
        workspace = cwd.resolve()
        return run_confined([*self._wrapper(workspace), "--", *argv], cwd=workspace, timeout_s=timeout_s,
                            limits=self._limits, max_output_chars=self._max_output_chars, sandbox=self.name)

    def _wrapper(self, workspace: Path) -> list[str]:
        """bwrap and its options. Mounts apply in order: a workspace under /tmp or under a
        read-only path is mounted last, writable, over them. Then the root and /dev, which
        bubblewrap makes as unbounded in-memory filesystems, become read-only, so that the
        size-bounded /tmp and /dev/shm are the only writable memory."""
        tmp_size = str(self._limits.tmp_bytes)
        read_only = [arg for path in self._limits.read_paths for arg in ("--ro-bind-try", str(path), str(path))]
        return [
            self._bwrap,
            "--unshare-all", "--unshare-user", "--uid", _SANDBOX_ID, "--gid", _SANDBOX_ID,
            "--hostname", "sandbox", "--cap-drop", "ALL", "--die-with-parent", "--new-session",
            *self._system_mounts,
            "--proc", "/proc", "--dev", "/dev",
            "--size", tmp_size, "--tmpfs", "/dev/shm",
            "--size", tmp_size, "--tmpfs", "/tmp",
            *read_only,
            "--bind", str(workspace), str(workspace), "--chdir", str(workspace),
            "--remount-ro", "/dev", "--remount-ro", "/",
        ]
