"""Writers to one SQLite file queue on a lock beside it: a write transaction holds the lock
from its first write to its end, a writer waits for another connection (or process) and
goes on the moment it lets go, a waiter that gives up leaves nothing held, and a holder
that is killed leaves the lock free."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker
from hybrid_agent.store.sqlite_write_lock import WriteLock, WriteLockTimeout, lock_path, queue_writers

from tests.store.test_store import event


@pytest.fixture
async def sqlite_sessions(database: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(f"sqlite:///{database}")
    yield make_sessionmaker(engine)
    await engine.dispose()


@contextlib.contextmanager
def held_elsewhere(database: Path) -> Iterator[None]:
    """The write lock taken through a descriptor of its own, as another process would."""
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def someone_else_gets_the_lock(database: Path) -> None:
    """Another descriptor takes the lock, waiting for it (a waiter that never lets go
    fails this by the timeout)."""
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT)
    try:
        await asyncio.wait_for(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX), timeout=10)
    finally:
        os.close(fd)


def lock_is_free(database: Path) -> bool:
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


async def test_a_write_transaction_holds_the_lock_from_its_first_write_to_its_end(database, sqlite_sessions):
    async with sqlite_sessions.begin() as session:
        await queries.count_tasks(session)
        assert lock_is_free(database)   # reads do not queue
        await queries.insert_events(session, events=[event("e1", "k1")])
        assert not lock_is_free(database)
    assert lock_is_free(database)


async def test_a_rolled_back_transaction_lets_the_lock_go(database, sqlite_sessions):
    with pytest.raises(RuntimeError):
        async with sqlite_sessions.begin() as session:
            await queries.insert_events(session, events=[event("e1", "k1")])
            raise RuntimeError("the caller failed mid-transaction")
    assert lock_is_free(database)
    async with sqlite_sessions() as session:
        assert await queries.event_exists(session, dedup_key="k1") is False


async def test_a_connection_back_in_the_pool_after_a_commit_is_not_rolled_back_again(
    sqlite_sessions, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with sqlite_sessions() as session:   # the connection made (SQLAlchemy rolls back a new one)
        await queries.count_tasks(session)
    rollbacks = []
    real_rollback = aiosqlite.Connection.rollback

    async def counted(self: aiosqlite.Connection) -> None:
        rollbacks.append(self)
        await real_rollback(self)

    monkeypatch.setattr(aiosqlite.Connection, "rollback", counted)
    for n in range(3):
        async with sqlite_sessions.begin() as session:
            await queries.insert_events(session, events=[event(f"e{n}", f"k{n}")])
    assert rollbacks == []   # a round trip to the driver's thread each, saved


async def test_a_transaction_left_open_below_the_store_is_rolled_back_when_its_connection_returns(
    database, sqlite_sessions,
) -> None:
    engine = sqlite_sessions.kw["bind"]
    async with engine.connect() as connection:   # the pool's only connection
        driver = (await connection.get_raw_connection()).driver_connection
        await driver.execute("INSERT INTO events (id, dedup_key, source, kind, payload, created_at) "
                             "VALUES ('raw', 'raw', 'user', 'task', '{}', '2026-11-27 00:00:00')")
        assert driver.in_transaction
    async with sqlite_sessions() as session:   # the same connection, its transaction gone
        assert await queries.event_exists(session, dedup_key="raw") is False
    assert not driver.in_transaction


async def test_a_writer_waits_for_the_holder_and_goes_on_when_it_lets_go(database, sqlite_sessions):
    async def write() -> None:
        async with sqlite_sessions.begin() as session:
            await queries.insert_events(session, events=[event("e1", "k1")])

    with held_elsewhere(database):
        writing = asyncio.create_task(write())
        await asyncio.sleep(0.2)
        assert not writing.done()   # it cannot have written while the lock is held
    await writing
    async with sqlite_sessions() as session:
        assert await queries.event_exists(session, dedup_key="k1")


async def test_a_writer_that_waits_too_long_gets_an_error_naming_the_lock_and_holds_nothing(database):
    lock = WriteLock(lock_path(database), timeout_s=0.1)
    with held_elsewhere(database):
        with pytest.raises(WriteLockTimeout, match="store.db.write-lock"):
            await lock.acquire()
    await lock.acquire()   # a later try succeeds once the holder let go
    lock.release()
    # The thread still waiting when the first try gave up lets go of what it gets.
    await someone_else_gets_the_lock(database)
    lock.close()


async def test_a_transaction_that_waits_too_long_fails_as_a_locked_database_would(database):
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}")
    queue_writers(engine.sync_engine, database, timeout_s=0.1)
    try:
        with held_elsewhere(database):
            with pytest.raises(OperationalError, match="store.db.write-lock"):   # as the worker handles
                async with make_sessionmaker(engine).begin() as session:
                    await queries.insert_events(session, events=[event("e1", "k1")])
        async with make_sessionmaker(engine).begin() as session:   # and the next one goes on
            await queries.insert_events(session, events=[event("e1", "k1")])
    finally:
        await engine.dispose()


async def test_a_cancelled_waiter_leaves_the_lock_free(database):
    lock = WriteLock(lock_path(database), timeout_s=10)
    with held_elsewhere(database):
        waiting = asyncio.create_task(lock.acquire())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert not lock.held
    await someone_else_gets_the_lock(database)
    lock.close()


HOLDER = """
import asyncio, sys
from hybrid_agent.store.db import make_engine, make_sessionmaker
from hybrid_agent.store import queries
from tests.store.test_store import event

async def main():
    sessions = make_sessionmaker(make_engine(sys.argv[1]))
    async with sessions.begin() as session:
        await queries.insert_events(session, events=[event("held", "held")])
        print("holding", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_holder_killed_mid_transaction_leaves_the_lock_free(database, sqlite_sessions):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, f"sqlite:///{database}"], stdout=subprocess.PIPE,
                              cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"holding\n"
        assert not lock_is_free(database)
    finally:
        holder.kill()
        holder.wait()
    async with sqlite_sessions.begin() as session:
        await queries.insert_events(session, events=[event("e1", "k1")])
    async with sqlite_sessions() as session:
        assert await queries.event_exists(session, dedup_key="k1")
        assert not await queries.event_exists(session, dedup_key="held")   # its transaction never committed
