"""SQLite's log is checkpointed by a thread beside the writers: commits never copy it back
(so no writer waits in the write lock's queue for another's checkpoint), the thread copies
it while writers go on, starts it afresh under the write lock once it is long (queueing
with the writers, never around them), gives up its restart rather than wait for a reader
(letting the lock go), and stops with its engine."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker
from hybrid_agent.store.wal_checkpoint import WalCheckpointer

from tests.store.test_sqlite_write_lock import held_elsewhere

PAGE = 4096
NEVER_S = 3600.0   # the engine's own checkpointer stays out of the way
WAIT_S = 30.0      # the most a test waits for the checkpointer's thread to get somewhere


@pytest.fixture
async def engine(database: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite:///{database}", checkpoint_interval_s=NEVER_S)
    yield engine
    await engine.dispose()


async def write_pages(engine: AsyncEngine, pages: int, *, per_transaction: int = 100) -> None:
    """Journal entries of about a page each, ``per_transaction`` to a commit."""
    sessions = make_sessionmaker(engine)
    for start in range(0, pages, per_transaction):
        async with sessions.begin() as session:
            await queries.add_journal_many(session, entries=[
                {"kind": "test.page", "task_id": None, "event_id": None, "detail": {"filler": "x" * PAGE}}
                for _ in range(min(per_transaction, pages - start))])


def log_pages(database: Path) -> int:
    """Pages in the log since it last started afresh (a passive checkpoint on the side)."""
    with sqlite3.connect(database) as connection:
        return connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the checkpointer's thread did not get there")


async def test_commits_leave_the_log_to_the_checkpointer(engine: AsyncEngine, database: Path) -> None:
    # SQLite's default would copy the log back at 1,000 pages, inside the commit, and the
    # next commit would reuse it from its start: the file would stay near 4 MB.
    await write_pages(engine, 3000)
    assert os.path.getsize(f"{database}-wal") > 2500 * PAGE


async def test_a_long_log_is_copied_and_started_afresh_while_writers_go_on(engine: AsyncEngine,
                                                                          database: Path) -> None:
    await write_pages(engine, 600)
    long_log = log_pages(database)
    checkpointer = WalCheckpointer(database, interval_s=0.01, restart_pages=500)
    checkpointer.start()
    try:
        await until(lambda: checkpointer.restarts >= 1)
        await write_pages(engine, 100)   # reuses the log from its start
    finally:
        checkpointer.stop()
    assert 100 <= log_pages(database) < long_log / 3


async def test_the_restart_queues_for_the_write_lock_with_the_writers(engine: AsyncEngine, database: Path) -> None:
    await write_pages(engine, 600)
    checkpointer = WalCheckpointer(database, interval_s=0.01, restart_pages=500)
    try:
        with held_elsewhere(database):   # a writer of another process holds it
            checkpointer.start()
            # Its passive checkpoint ran; its restart waits for the lock, as a writer would.
            await until(lambda: checkpointer.passes >= 1)
            assert checkpointer.turns == 0 and checkpointer.restarts == 0
        await until(lambda: checkpointer.restarts >= 1)
    finally:
        checkpointer.stop()


async def test_a_reader_in_the_log_puts_the_restart_off_and_writers_are_not_held(engine: AsyncEngine,
                                                                                 database: Path) -> None:
    await write_pages(engine, 600)
    reader = sqlite3.connect(database, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM journal").fetchone()   # a snapshot that reads the log
    checkpointer = WalCheckpointer(database, interval_s=0.01, restart_pages=500)
    checkpointer.start()
    try:
        await until(lambda: checkpointer.turns >= 2)   # each let the write lock go
        assert checkpointer.restarts == 0
        await write_pages(engine, 10)                 # the lock is free: this commits
        reader.execute("COMMIT")
        await until(lambda: checkpointer.restarts >= 1)
    finally:
        reader.close()
        checkpointer.stop()


async def test_the_checkpointer_stops_with_its_engine(database: Path) -> None:
    engine = make_engine(f"sqlite:///{database}")
    async with engine.connect() as connection:
        checkpointer = (await connection.get_raw_connection()).info["wal_checkpointer"]
    assert checkpointer.running
    await engine.dispose()
    assert not checkpointer.running
