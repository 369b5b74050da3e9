"""Writers to one SQLite file queue in the kernel, not in SQLite's busy handler.

SQLite has one writer at a time. A writer that finds the database locked retries through
its busy handler, which sleeps 1, 2, 5, 10 ... up to 100 ms between tries: with a router
and several workers writing from their own processes, an unlucky transaction waits a
hundred milliseconds or more while the lock was free most of that time. So before the
first write of a transaction the connection takes an advisory lock (``flock``) on a file
beside the database, and the next writer wakes the moment it is let go. The lock is let go
when the connection returns to the pool (its transaction committed or rolled back), and by
the kernel when the process dies, so a killed worker never leaves it held. A writer that
waits longer than SQLite's busy timeout gets the error SQLite would give (the store's
``OperationalError``), naming the lock file. Every process writing the file must share the
host's filesystem, as SQLite itself requires."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

READS = ("SELECT", "PRAGMA", "EXPLAIN")   # statements that never take SQLite's write lock


class WriteLockTimeout(TimeoutError):
    """Another connection held the database's write lock too long."""


class WriteLock:
    """An exclusive ``flock`` on ``path``, taken without blocking the event loop."""

    def __init__(self, path: Path, *, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.fd = self._open()
        self.held = False

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    async def acquire(self) -> None:
        if self.held:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # free: no thread needed
        except BlockingIOError:
            await self._wait()
        self.held = True

    async def _wait(self) -> None:
        fd = self.fd
        waiting = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.wait_for(asyncio.shield(waiting), self.timeout_s)
        except BaseException as exc:
            # Timed out or cancelled: the thread still waits on this descriptor. Closing it
            # once the thread returns lets that lock go; later acquires use a fresh one.
            waiting.add_done_callback(lambda _: os.close(fd))
            self.fd = self._open()
            if isinstance(exc, TimeoutError):
                raise WriteLockTimeout(f"the SQLite write lock {self.path} was held by another connection "
                                       f"for over {self.timeout_s:g}s") from exc
            raise

    def release(self) -> None:
        if self.held:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.held = False

    def close(self) -> None:
        self.held = False
        os.close(self.fd)


async def take_write_lock(info: dict[str, Any], statement: str) -> None:
    """Take the write lock of a pooled connection (its ``info``), if its database has one,
    before ``statement``: from SQLAlchemy's cursor events, or by ``direct_sqlite``."""
    if lock := info.get("write_lock"):
        try:
            await lock.acquire()
        except WriteLockTimeout as exc:
            # What SQLite's own "database is locked" is, so callers handle both alike.
            raise OperationalError(statement, None, exc) from exc


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".write-lock")


def queue_writers(engine: Engine, database: Path, *, timeout_s: float) -> None:
    """Make every connection of ``engine`` (an async engine's ``sync_engine``) take the
    write lock of ``database`` before its transaction's first write."""
    path = lock_path(database)

    @event.listens_for(engine, "connect")
    def open_lock(_dbapi_connection: object, record: ConnectionPoolEntry) -> None:
        record.info["write_lock"] = WriteLock(path, timeout_s=timeout_s)

    @event.listens_for(engine, "before_cursor_execute")
    def lock_before_write(conn: Connection, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip()[:7].upper().startswith(READS) or conn.info["write_lock"].held:
            return
        conn.connection.dbapi_connection.run_async(lambda _: take_write_lock(conn.info, statement))

    @event.listens_for(engine, "checkin")
    def release_lock(_dbapi_connection: object, record: ConnectionPoolEntry) -> None:
        if lock := record.info.get("write_lock"):
            lock.release()

    @event.listens_for(engine, "close")
    def close_lock(_dbapi_connection: object, record: ConnectionPoolEntry) -> None:
        if lock := record.info.pop("write_lock", None):
            lock.close()
