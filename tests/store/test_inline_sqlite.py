"""The SQLite store runs its statements on the event loop's own thread: a write transaction
goes from its first write to its commit without giving the loop a turn (so the write lock
is held for the statements' time, not for hand-offs between threads), SQLite's errors still
reach the caller as the store's, and the connection is closed with its engine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate
from hybrid_agent.store.inline_sqlite import InlineConnection

from tests.store.test_store import event as event_row, task as task_row


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    await asyncio.to_thread(migrate, url)
    engine = make_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def thread_function(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.create_function("caller_thread", 0, threading.get_ident)

    yield engine
    await engine.dispose()


class LoopTurns:
    """Counts the turns the event loop gives other tasks."""

    def __init__(self) -> None:
        self.count = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.count += 1


async def test_statements_run_on_the_thread_that_awaits_them(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        caller = (await connection.execute(text("SELECT caller_thread()"))).scalar_one()
    assert caller == threading.get_ident()


async def test_a_write_transaction_runs_to_its_commit_without_giving_the_loop_a_turn(engine: AsyncEngine) -> None:
    sessions, turns, at_commit = make_sessionmaker(engine), LoopTurns(), []
    event.listen(engine.sync_engine, "commit", lambda _connection: at_commit.append(turns.count))
    counter = asyncio.create_task(turns.run())
    await asyncio.sleep(0.01)
    try:
        # The session's own transaction commits in place (``sessions.begin()`` ends its
        # transaction in a task of its own: one turn of the loop before the commit).
        async with sessions() as session, session.begin():
            await queries.insert_events(session, events=[event_row("e1", "k1")])
            at_first_write = turns.count
            await queries.insert_tasks(session, tasks=[task_row("t1", "e1")])
            await queries.start_tasks(session, workspaces={"t1": "/w"}, isolation="none")
    finally:
        counter.cancel()
    assert at_commit == [at_first_write]
    async with sessions() as session:
        assert (await queries.get_task(session, task_id="t1")).status == "running"


async def test_a_failed_statement_is_the_stores_error_and_the_connection_goes_on(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE pairs (k INTEGER PRIMARY KEY)"))
        await connection.execute(text("INSERT INTO pairs VALUES (1)"))
    with pytest.raises(IntegrityError, match="UNIQUE"):
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO pairs VALUES (2)"))
            await connection.execute(text("INSERT INTO pairs VALUES (1)"))
    async with engine.connect() as connection:   # the failed transaction was rolled back whole
        assert (await connection.execute(text("SELECT k FROM pairs"))).scalars().all() == [1]


async def test_the_connection_closes_with_its_engine(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, InlineConnection) and driver._connection is not None
    await engine.dispose()
    assert driver._connection is None
