"""The store's per-batch writes on SQLite, run on the driver's own connection.

The router stores every batch of events it fetches, and a worker starts and then finishes
every batch of tasks it takes, each in one transaction. Through SQLAlchemy's execute path
(the statement's cache key, an execution context, the result's processing) such a
transaction of three tasks took 0.53-0.58 ms of CPU here, the SQLite statements a small part
of it; this way, 0.22-0.33 ms (``benchmarks/store_transaction.py``: 0.70 -> 0.39 ms for eight
tasks). At 500 events/s the load benchmark's workers spent about a fifth of their CPU on
that path.

So these statements are compiled once per shape from the same Core constructs and run on
the session's own sqlite3 connection, inside the session's transaction (begun and committed
by the session as ever), after taking the write lock as every write does
(``sqlite_write_lock``). Parameters pass through the columns' own bind processors and
Python-side defaults, so a row is stored exactly as SQLAlchemy would store it. Only the
inline driver (``inline_sqlite``) hands out its connection: aiosqlite's thread owns its
own. PostgreSQL keeps SQLAlchemy's path."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable
from sqlalchemy.sql.schema import ColumnDefault

from hybrid_agent.store.inline_sqlite import InlineConnection
from hybrid_agent.store.sqlite_write_lock import take_write_lock


@dataclass(frozen=True)
class Compiled:
    """A statement as SQLite runs it: its SQL with ``?`` placeholders and, for each
    placeholder, where its value comes from."""

    sql: str
    names: tuple[str, ...]                                 # the parameter behind each placeholder
    processors: tuple[Callable[[Any], Any] | None, ...]    # the column type's bind processor
    fixed: Mapping[str, Any]                               # values the statement carries itself
    defaults: Mapping[str, ColumnDefault]                  # of the columns the rows leave out

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        row = []
        for name, process in zip(self.names, self.processors):
            if name in values:
                value = values[name]
            elif default := self.defaults.get(name):
                # A callable default is wrapped by SQLAlchemy to take an execution context; ours use none.
                value = default.arg(None) if default.is_callable else default.arg
            else:
                value = self.fixed[name]
            row.append(value if process is None else process(value))
        return tuple(row)


@lru_cache(maxsize=256)
def compile_for(statement: Executable, dialect: Dialect, column_keys: tuple[str, ...] | None = None) -> Compiled:
    """``statement`` (a constant: cached by identity) compiled for SQLite; an INSERT for
    rows with ``column_keys``."""
    compiled = statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
    if "POSTCOMPILE" in compiled.string:
        raise ValueError(f"an IN list is compiled per execution, not once: {compiled.string}")
    binds = compiled.binds
    names = tuple(compiled.positiontup or ())
    processors = tuple(binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
    defaults = {column.key: column.default for column in getattr(compiled, "insert_prefetch", ())}
    fixed = {name: bind.effective_value for name, bind in binds.items()}
    return Compiled(compiled.string, names, processors, fixed, defaults)


class DirectConnection:
    """The sqlite3 connection of a session's transaction, its write lock held."""

    def __init__(self, connection: sqlite3.Connection, dialect: Dialect) -> None:
        self.connection = connection
        self.dialect = dialect

    def execute(self, statement: Executable, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """One statement (an INSERT of the columns in ``values``); the rows it returns."""
        compiled = compile_for(statement, self.dialect, tuple(values) if statement.is_insert else None)
        parameters = compiled.parameters(values)
        try:
            return self.connection.execute(compiled.sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise _translated(compiled, parameters, exc) from exc

    def execute_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> int:
        """The statement for each of ``rows``, all of the same keys; how many rows it changed."""
        keys = tuple(rows[0])
        if any(tuple(row) != keys for row in rows):
            raise ValueError(f"rows of other keys than {keys} need a statement of their own")
        compiled = compile_for(statement, self.dialect, keys if statement.is_insert else None)
        parameters = [compiled.parameters(values) for values in rows]
        try:
            return self.connection.executemany(compiled.sql, parameters).rowcount
        except sqlite3.Error as exc:
            raise _translated(compiled, parameters, exc) from exc


def _translated(compiled: Compiled, parameters: Any, exc: sqlite3.Error) -> DBAPIError:
    """The error SQLAlchemy would raise (IntegrityError, OperationalError, ...)."""
    return DBAPIError.instance(compiled.sql, parameters, exc, sqlite3.Error)


async def direct_connection(session: AsyncSession) -> DirectConnection | None:
    """The session's sqlite3 connection with the write lock taken, for writes; None where
    the store is not SQLite on the inline driver."""
    if session.bind.dialect.name != "sqlite":
        return None
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if not isinstance(driver, InlineConnection) or driver.sqlite3_connection is None:
        return None
    await take_write_lock(connection.sync_connection.info, "a write through direct_sqlite")
    return DirectConnection(driver.sqlite3_connection, session.bind.dialect)
