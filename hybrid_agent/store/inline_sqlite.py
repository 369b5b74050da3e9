"""aiosqlite's connection with its calls run on the event loop's own thread.

aiosqlite runs every call (a cursor, an execute, a fetch, a close, a commit) on a thread of
its own and hands the result back through the event loop: five hand-offs for one small
statement, ten or more for a transaction, each waking a thread and the loop. The store's
statements take tens of microseconds in SQLite; on a busy 2-core machine the hand-offs
took milliseconds, and a transaction held SQLite's one write lock (``sqlite_write_lock``)
through all of them: 4-6 ms a transaction with the load benchmark's router and three
workers writing, the lock held nearly all the time and every writer queueing behind it.

``InlineConnection`` runs the same calls where they are made. A transaction then runs from
its first write to its commit without giving the event loop a turn, so the lock is held
for the statements' own time; the loop is blocked for that time too, which is what the
thread saved for the store's small statements, at a cost above it. SQLite waiting for a
lock would block the loop as well: writers here queue on the write lock before their first
write (without blocking the loop), and WAL readers do not wait for writers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

ITER_CHUNK_SIZE = 64   # aiosqlite's default: rows a cursor's async iteration fetches at once


class InlineConnection(aiosqlite.Connection):
    """An ``aiosqlite.Connection`` without its thread: every call runs when awaited."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._connect().__await__()

    @property
    def sqlite3_connection(self) -> sqlite3.Connection | None:
        """The driver's own connection (None once closed), for statements run on it directly."""
        return self._connection

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def connect_inline(database: str | Path, **kwargs: Any) -> InlineConnection:
    """What ``aiosqlite.connect`` takes and gives, as an ``InlineConnection``: SQLAlchemy's
    aiosqlite dialect calls it with the URL's arguments (``connect_args``'s
    ``async_creator_fn``)."""
    return InlineConnection(partial(sqlite3.connect, str(database), **kwargs), ITER_CHUNK_SIZE)
