"""SQLite's WAL checkpoints run on a thread beside the writers, not inside their commits.

In WAL mode a commit appends every page it changed to the log, and by default the commit
that takes the log past 1,000 pages (4 MB) also copies the log back into the database
file and syncs both files: a checkpoint. That commit still holds the write lock every other
writer queues on (``sqlite_write_lock``), so all of them wait for the copy and the syncs.
With the load benchmark's router and three workers at 500 events/s the log grew by about
6,700 pages a second: a checkpoint every 150 ms, 7-20 ms each, and those waits made the
latency's tail.

So every pooled connection turns automatic checkpoints off, and a thread with its own
connection checkpoints every ``interval_s``:

- a PASSIVE checkpoint copies the log's pages into the database while writers and readers
  go on (SQLite lets one checkpoint run beside them); it never takes the write lock.
- That alone would let the log grow for ever under steady writes: a writer starts the log
  afresh only when it finds every page of it copied, and with commits landing during each
  copy it never does. So once the log holds ``restart_pages``, the thread takes the write
  lock as a writer would and runs a RESTART checkpoint, which copies the few pages written
  since the passive one and waits for readers to leave the log; the next writer starts it
  from the beginning. A log file that grew in a burst is cut to ``JOURNAL_SIZE_LIMIT`` then.
  The wait for readers is short (``RESTART_WAIT_S``), then it gives up until its next turn:
  a transaction that read before its first write holds its place in the log while it queues
  for the write lock, and would otherwise wait for this checkpoint that waits for it.

Each process that opens the database runs its own checkpointer: where two are due at once,
one copies and the other finds the checkpoint busy and waits for its next turn."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry

from hybrid_agent.store.sqlite_write_lock import lock_path

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 0.5
RESTART_PAGES = 8192                    # 32 MB of log with 4 KB pages
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024   # bytes of log file kept once the log starts afresh
RESTART_WAIT_S = 0.02                   # how long a RESTART waits for readers to leave the log
STOP_TIMEOUT_S = 15.0                   # a checkpoint in progress finishes first


class WalCheckpointer:
    """A daemon thread checkpointing ``database``'s log every ``interval_s``."""

    def __init__(self, database: Path, *, interval_s: float, restart_pages: int = RESTART_PAGES) -> None:
        self.database = database
        self.interval_s = interval_s
        self.restart_pages = restart_pages
        self.passes = 0     # passive checkpoints done
        self.turns = 0      # checkpoints tried (each done with the write lock let go)
        self.restarts = 0   # RESTART checkpoints done: the log starts afresh after each
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"wal-checkpoint {database.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        connection = sqlite3.connect(self.database, isolation_level=None, timeout=RESTART_WAIT_S)
        lock = os.open(lock_path(self.database), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while not self._stop.wait(self.interval_s):
                self._checkpoint(connection, lock)
        finally:
            os.close(lock)
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection, lock: int) -> None:
        """A passive checkpoint; then a restart under the write lock if the log is long."""
        try:
            busy, pages, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.passes += 1
            if not busy and pages >= self.restart_pages:
                self._restart(connection, lock)
        except sqlite3.Error as exc:   # the next turn tries again; no commit depends on it
            log.warning("checkpointing %s failed: %s", self.database, exc)
        finally:
            self.turns += 1

    def _restart(self, connection: sqlite3.Connection, lock: int) -> None:
        fcntl.flock(lock, fcntl.LOCK_EX)   # this thread queues with the writers
        try:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        self.restarts += not busy


def checkpoint_beside_writers(engine: Engine, database: Path, *, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
    """Give every connection of ``engine`` (an async engine's ``sync_engine``) on
    ``database`` a checkpointer thread, and keep its commits from checkpointing."""

    @event.listens_for(engine, "connect")
    def start_checkpointer(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        cursor.close()
        checkpointer = record.info["wal_checkpointer"] = WalCheckpointer(database, interval_s=interval_s)
        checkpointer.start()

    @event.listens_for(engine, "close")
    def stop_checkpointer(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        if checkpointer := record.info.pop("wal_checkpointer", None):
            checkpointer.stop()
