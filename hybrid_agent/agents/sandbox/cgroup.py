"""A pids cgroup per command. RLIMIT_NPROC counts every process of the user rather than of
one command, and the kernel does not enforce it for root (nor in a user namespace mapped
to root); a cgroup's ``pids.max`` bounds the command's own processes. The cgroup also
lists every process the command started, setsid or not, so that all of them can be killed.

cgroup v2 is used where its root offers the pids controller, else the v1 pids hierarchy.
Where neither can be written (not root, a read-only cgroupfs) ``create`` returns None and
the caller falls back to RLIMIT_NPROC.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/pids")
_PARENT = "hybrid-agent"       # one directory holds the commands' cgroups
_CLOSE_WAIT_S = 2.0            # for killed processes to leave the cgroup
_TICK_S = 0.01


def _write(file: Path | str, text: str) -> None:
    """Write to an existing control file; never creates one, so a directory that is not a
    cgroup (no such file) fails instead of silently limiting nothing."""
    fd = os.open(file, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _parent() -> Path:
    """The directory that command cgroups are made in, created when missing; OSError
    where there is none."""
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "pids" in controllers.read_text().split():
        parent = V2_ROOT / _PARENT
        parent.mkdir(exist_ok=True)
        if "pids" not in (parent / "cgroup.subtree_control").read_text().split():
            _write(parent / "cgroup.subtree_control", "+pids")
        return parent
    parent = V1_ROOT / _PARENT
    parent.mkdir(exist_ok=True)
    return parent


class PidsCgroup:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._procs = str(path / "cgroup.procs")   # ready before fork: join runs in the child

    @classmethod
    def create(cls, max_processes: int) -> PidsCgroup | None:
        """A fresh cgroup allowing ``max_processes`` processes and threads, or None."""
        try:
            path = _parent() / f"cmd-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            path.mkdir()
        except OSError:
            return None
        try:
            _write(path / "pids.max", str(max_processes))
        except OSError:
            path.rmdir()
            return None
        return cls(path)

    def join(self) -> None:
        """Move the calling process in; run in the child before exec, so that everything
        the command starts is counted."""
        _write(self._procs, str(os.getpid()))

    def pids(self) -> list[int]:
        return [int(pid) for pid in Path(self._procs).read_text().split()]

    def close(self) -> None:
        """Kill every process left in the cgroup and remove it. Killing repeats until the
        cgroup is empty: a process may fork between one listing and its kill."""
        deadline = time.monotonic() + _CLOSE_WAIT_S
        while True:
            with contextlib.suppress(FileNotFoundError):
                for pid in self.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:   # EBUSY: killed processes are still exiting
                if time.monotonic() > deadline:
                    log.warning("cgroup %s still has processes %s; left in place", self.path, self.pids())
                    return
                time.sleep(_TICK_S)


def pids_cgroups_work() -> bool:
    """Whether a pids cgroup can be made here now."""
    cgroup = PidsCgroup.create(1)
    if cgroup is None:
        return False
    cgroup.close()
    return True
