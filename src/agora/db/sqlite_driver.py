"""SQLite through aiosqlite in ONE trip to its thread per statement.

aiosqlite runs every call of the `sqlite3` module on a thread of its own; each call is a
trip there and back (a queue put, a thread wake-up, a future resolved through the event
loop's self-pipe): ~60 µs of CPU on the benchmark machine. SQLAlchemy's aiosqlite adapter
makes four trips for a SELECT (open a cursor, execute, fetch the rows, close the cursor) and
three for an INSERT/UPDATE/DELETE, where one would do: measured with `aiosqlite` alone, a
one-row SELECT costs ~270 µs of CPU in four trips and ~80 µs in one.

`OneTripCursor` runs the whole statement (cursor, execute, fetch every row, close) as one
function on aiosqlite's thread and keeps what SQLAlchemy reads afterwards: the rows, the
description, `rowcount` and `lastrowid`. Everything else is SQLAlchemy's adapter unchanged:
the connection, its execute lock, error translation, transactions, and the server-side
cursors of `stream_results` / `yield_per` (which fetch in batches, so keep their cursor).

It relies on two private names: aiosqlite's `Connection._execute(fn)` (run `fn` on the
connection's thread; the basis of every aiosqlite call) and SQLAlchemy's adapter internals
(`_execute_async`, `_execute_mutex`). `tests/db/test_engine.py` counts the trips, so a
release that changes them fails the suite instead of silently slowing down.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)


class _Outcome:
    """What a finished statement leaves behind: the part of a DB-API cursor SQLAlchemy reads
    once the statement has run."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(self, cursor: sqlite3.Cursor | None = None) -> None:
        self.description: Any = None if cursor is None else cursor.description
        self.rowcount: int = -1 if cursor is None else cursor.rowcount
        self.lastrowid: int | None = None if cursor is None else cursor.lastrowid
        self.arraysize = 1

    def close(self) -> None:
        """Nothing to close: the sqlite3 cursor was closed on aiosqlite's thread."""


def _run_statement(
    aio: Any,
    operation: str,
    parameters: Sequence[Any] | None,
    many: bool,
) -> tuple[_Outcome, list[Any] | None]:
    # On aiosqlite's thread (`aio._conn`: its sqlite3 connection): the whole statement, then
    # the cursor is closed.
    cursor = aio._conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters or ())
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else None
        return _Outcome(cursor), rows
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor, one trip to aiosqlite's thread per statement."""

    __slots__ = ()

    def __init__(self, adapt_connection: Any) -> None:
        # The base opens an aiosqlite cursor here (a trip); statements open their own.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = _Outcome()  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._run(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._run(operation, seq_of_parameters, many=True)

    async def _run(self, operation: Any, parameters: Any, *, many: bool) -> None:
        aio = self._connection
        async with self._adapt_connection._execute_mutex:
            outcome, rows = await aio._execute(_run_statement, aio, operation, parameters, many)
        self._cursor = outcome
        self._rows = collections.deque(rows or ())

    async def _async_soft_close(self) -> None:
        """The statement's cursor is already closed; its results stay readable."""

    def close(self) -> None:
        self._rows.clear()

    def nextset(self) -> None:
        raise NotImplementedError("SQLite returns one result set per statement")

    def setinputsizes(self, *inputsizes: Any) -> None:
        """sqlite3 ignores input sizes."""


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DB-API module SQLAlchemy's aiosqlite dialect is given (`module=`): its connections
    hand out `OneTripCursor`s."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        stock = super().connect(*arg, **kw)
        return OneTripConnection(self, stock._connection)


def one_trip_dbapi() -> OneTripDBAPI:
    import aiosqlite

    return OneTripDBAPI(aiosqlite, sqlite3)
