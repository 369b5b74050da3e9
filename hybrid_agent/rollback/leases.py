"""A scope's lease: the task working in it holds it, and a restore asked for by anyone
else is refused while it does. An flock on a file under the data dir, so a process that
dies gives its leases back at once; the file names the holder for the refusal's message."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from types import TracebackType

from hybrid_agent.rollback.errors import ScopeBusy


def scope_key(scope: Path | str) -> str:
    return hashlib.sha256(str(scope).encode()).hexdigest()[:32]


class ScopeLease:
    def __init__(self, leases_dir: Path, scope: Path | str, holder: str) -> None:
        self.scope = str(scope)
        self.holder = holder
        self.path = leases_dir / f"{scope_key(scope)}.lock"
        self._fd: int | None = None

    def acquire(self) -> ScopeLease:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ScopeBusy(f"scope {self.scope} is busy: {self._describe_holder()}; "
                            "try again when that work has ended") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"holder": self.holder, "pid": os.getpid(), "since": time.time()}).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> ScopeLease:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def _describe_holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another process holds its lease"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.get("since", 0)))
        return f"held by {info.get('holder')} (pid {info.get('pid')}) since {since} UTC"
