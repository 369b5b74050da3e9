"""Engines, sessions and migrations. SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from hybrid_agent.store.inline_sqlite import connect_inline
from hybrid_agent.store.sqlite_write_lock import queue_writers
from hybrid_agent.store.wal_checkpoint import CHECKPOINT_INTERVAL_S, checkpoint_beside_writers

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 10.0   # the longest a SQLite writer waits for another to finish


def async_url(url: str) -> str:
    """Pick the async driver for a URL a person would write (``postgresql://``, ``sqlite:///``)."""
    parsed = make_url(url)
    driver = {"postgresql": "postgresql+psycopg", "sqlite": "sqlite+aiosqlite"}.get(parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False) if driver else url


def sync_url(url: str) -> str:
    parsed = make_url(async_url(url))
    driver = {"sqlite+aiosqlite": "sqlite"}.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets readers (API) run beside the one writer (router/worker); NORMAL sync is
    # durable across process crashes, which is what a journal here needs.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _rollback_if_open(dbapi_connection, record: ConnectionPoolEntry, state: PoolResetState) -> None:  # type: ignore[no-untyped-def]
    # The pool's own reset rolls back every connection it gets back, even right after a
    # commit: one more call into the driver for nothing (with aiosqlite's thread, a fifth of
    # a small transaction's CPU). SQLite knows whether a transaction is open; only then is
    # there one to end.
    if state.asyncio_safe and record.driver_connection.in_transaction:
        dbapi_connection.rollback()


def make_engine(url: str, *, inline: bool = True, checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> AsyncEngine:
    """An engine for ``url``. SQLite's statements run on the event loop's own thread
    (``inline_sqlite``): no hand-offs to a driver thread while a transaction holds the write
    lock, and the per-batch writes skip SQLAlchemy's execute path (``direct_sqlite``);
    ``inline=False`` keeps aiosqlite's thread and SQLAlchemy's path for every statement
    (``benchmarks/store_transaction.py``'s baseline). A SQLite file's log is checkpointed by
    a thread every ``checkpoint_interval_s``, not by the commits (``wal_checkpoint``)."""
    url = async_url(url)
    if url.startswith("sqlite"):
        # One connection per process: SQLite has one writer at a time, and writers that
        # contend through its busy handler sleep for milliseconds; queueing in the pool doesn't.
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60, pool_reset_on_return=None,
                                     connect_args={"async_creator_fn": connect_inline} if inline else {})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _rollback_if_open)
        if database := sqlite_file(url):
            queue_writers(engine.sync_engine, database, timeout_s=BUSY_TIMEOUT_S)
            checkpoint_beside_writers(engine.sync_engine, database, interval_s=checkpoint_interval_s)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def migrate(url: str) -> None:
    """Bring the schema to the latest revision (idempotent)."""
    if database := sqlite_file(url):
        database.parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    command.upgrade(config, "head")


def url_is_sqlite(url: str) -> bool:
    return make_url(url).drivername.startswith("sqlite")


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for an in-memory one or another database."""
    if not url_is_sqlite(url):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None
