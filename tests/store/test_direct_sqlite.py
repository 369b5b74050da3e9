"""On SQLite, the store's per-batch writes run on the driver's own connection: they store
exactly what SQLAlchemy's path stores, queue on the write lock as every write does, fail
with the store's errors, and commit or roll back with the session's transaction."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate
from hybrid_agent.store.direct_sqlite import direct_connection
from hybrid_agent.store.inline_sqlite import connect_inline
from hybrid_agent.store.sqlite_write_lock import queue_writers
from hybrid_agent.store.tables import utcnow

from tests.store.test_sqlite_write_lock import held_elsewhere, lock_is_free
from tests.store.test_store import event, task

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
TABLES = {"events": "id", "tasks": "id", "steps": "id", "journal": "id", "cooldowns": "rule"}


def step(task_id: str, observation: str) -> dict:
    return {"task_id": task_id, "n": 1, "tool_call": {"tool": "write_file", "args": {"path": "a"}}, "decision": "allow",
            "policy": None, "model": {}, "observation": observation, "ok": True, "candidates": [], "prompt_tokens": 3,
            "timings": {"act_s": 0.5}, "started_at": utcnow(), "duration_s": 0.5}


async def route_and_work_a_batch(sessions: async_sessionmaker[AsyncSession]) -> None:
    """What the router and a worker write for two tasks, one of which fails."""
    async with sessions.begin() as session:
        events = [{**event(f"e{i}", f"k{i}"), "payload": {"goal": "g", "n": i}} for i in range(2)]
        await queries.insert_events_and_tasks(session, events=events, tasks=[
            task("t0", "e0"), {**task("t1", "e1"), "params": {"path": "/srv"}, "priority": 2, "dry_run": True}])
        await queries.add_journal_many(session, entries=[
            {"kind": "task.enqueued", "task_id": t, "event_id": None, "detail": {"seq": n}} for n, t in enumerate("ab")])
        await queries.take_cooldown(session, rule="disk", resource="/srv", until=utcnow(), now=utcnow(), event_id="e1")
    async with sessions.begin() as session:
        await queries.start_tasks(session, workspaces={"t0": "/w/t0", "t1": "/w/t1"}, isolation="rlimit")
    async with sessions.begin() as session:
        await queries.add_steps(session, steps=[step("t0", "wrote 9 bytes"), step("t1", "no such file")])
        await queries.finish_tasks(session, finished=[
            {"id": "t0", "status": "succeeded", "result": {"summary": "wrote a", "success": True}, "error": None},
            {"id": "t1", "status": "failed", "result": None, "error": "no such file"}])
        await queries.add_journal(session, kind="task.finished", detail={"status": "failed"}, task_id="t1")


def stored(database: Path) -> dict[str, list[tuple]]:
    """Every row of the tables written, as SQLite holds it: each value with its storage
    class, timestamps by their format (they differ between runs)."""
    with sqlite3.connect(database) as connection:
        return {table: [tuple(("timestamp" if isinstance(value, str) and TIMESTAMP.match(value) else value,
                               type(value).__name__) for value in row)
                        for row in connection.execute(f"SELECT * FROM {table} ORDER BY {key}")]
                for table, key in TABLES.items()}


async def migrated_engine(path: Path, *, inline: bool) -> AsyncEngine:
    await asyncio.to_thread(migrate, f"sqlite:///{path}")
    return make_engine(f"sqlite:///{path}", inline=inline)


async def test_rows_written_directly_are_stored_as_sqlalchemy_stores_them(tmp_path: Path) -> None:
    direct, through_sqlalchemy = (await migrated_engine(tmp_path / "direct.db", inline=True),
                                  await migrated_engine(tmp_path / "sqlalchemy.db", inline=False))
    try:
        for engine, uses_direct in ((direct, True), (through_sqlalchemy, False)):
            async with make_sessionmaker(engine).begin() as session:
                assert (await direct_connection(session) is not None) is uses_direct
            await route_and_work_a_batch(make_sessionmaker(engine))
    finally:
        await direct.dispose()
        await through_sqlalchemy.dispose()
    rows = stored(tmp_path / "direct.db")
    assert rows == stored(tmp_path / "sqlalchemy.db")
    assert [len(rows[table]) for table in TABLES] == [2, 2, 2, 3, 1]
    async with make_sessionmaker(direct).begin() as session:   # and read back by the ORM as written
        t0, t1 = [await queries.get_task(session, task_id=t) for t in ("t0", "t1")]
    assert (t0.status, t0.result, t0.workspace, t0.deliveries, t0.dry_run) == (
        "succeeded", {"summary": "wrote a", "success": True}, "/w/t0", 1, False)
    assert (t1.status, t1.result, t1.error, t1.priority, t1.dry_run, t1.params) == (
        "failed", None, "no such file", 2, True, {"path": "/srv"})
    assert t0.started_at <= t0.finished_at


async def test_postgresql_keeps_sqlalchemys_path(postgres_url: str) -> None:
    await asyncio.to_thread(migrate, postgres_url)
    engine = make_engine(postgres_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            assert await direct_connection(session) is None
    finally:
        await engine.dispose()


async def test_a_direct_write_holds_the_write_lock_until_its_transaction_ends(database: Path) -> None:
    engine = make_engine(f"sqlite:///{database}")
    try:
        async with make_sessionmaker(engine).begin() as session:
            await queries.start_tasks(session, workspaces={"unknown": "/w"}, isolation="rlimit")
            assert not lock_is_free(database)
        assert lock_is_free(database)
    finally:
        await engine.dispose()


async def test_a_direct_write_that_waits_too_long_fails_as_a_locked_database_would(database: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}", pool_size=1, max_overflow=0,
                                 connect_args={"async_creator_fn": connect_inline})
    queue_writers(engine.sync_engine, database, timeout_s=0.1)
    sessions = make_sessionmaker(engine)
    try:
        with held_elsewhere(database):
            with pytest.raises(OperationalError, match="store.db.write-lock"):
                async with sessions.begin() as session:
                    await queries.add_journal(session, kind="incident.test", detail={})
        async with sessions.begin() as session:   # the next one goes on
            await queries.add_journal(session, kind="incident.test", detail={})
    finally:
        await engine.dispose()
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM journal").fetchone() == (1,)


async def test_a_failed_direct_write_is_the_stores_error_and_the_transaction_rolls_back_whole(database: Path) -> None:
    engine = make_engine(f"sqlite:///{database}")
    sessions = make_sessionmaker(engine)
    try:
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            async with sessions.begin() as session:
                await queries.insert_events_and_tasks(session, events=[event("e0", "k0")], tasks=[task("t0", "e0")])
                await queries.add_steps(session, steps=[step("never-stored", "x")])
        async with sessions() as session:
            assert await queries.count_tasks(session) == 0
            assert not await queries.event_exists(session, dedup_key="k0")
        assert lock_is_free(database)
    finally:
        await engine.dispose()
