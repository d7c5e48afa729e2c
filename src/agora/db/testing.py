"""Test helpers for projects built on `agora.db` (no pytest import needed).

* `rollback_session_factory(connection)`: sessions that join an outer transaction through
  SAVEPOINTs, so a test can `commit()` freely and still leave nothing behind.
* `count_queries(engine)`: count the statements an async block sends, to prove a listing
  is free of N+1 queries.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker


def rollback_session_factory(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Session factory bound to `connection`, whose commits become savepoint releases.

    See https://docs.sqlalchemy.org/en/20/orm/session_transaction.html#joining-a-session-into-an-external-transaction-such-as-for-test-suites
    """
    return async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


_TRANSACTION_CONTROL = re.compile(
    r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT)\b", re.IGNORECASE
)


@asynccontextmanager
async def isolated_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside an outer transaction that is rolled back on exit.

    Pair it with `rollback_session_factory` so a test can commit and leave nothing behind.
    """
    async with engine.connect() as conn:
        outer = await conn.begin()
        try:
            yield conn
        finally:
            if outer.is_active:
                await outer.rollback()


@dataclass
class QueryCounter:
    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)


@asynccontextmanager
async def count_queries(engine: AsyncEngine | Any) -> AsyncIterator[QueryCounter]:
    """Count the statements `engine` (or an `AsyncConnection`) executes inside the block.

    BEGIN/COMMIT/ROLLBACK/SAVEPOINT statements are left out: only the work counts.

    async with count_queries(engine) as q:
        await list_posts(uow)
    assert q.count <= 3, q.statements
    """
    target = engine.sync_engine if hasattr(engine, "sync_engine") else engine
    counter = QueryCounter()

    def _before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # Transaction control (e.g. the SAVEPOINTs of a test's rollback session) is not work
        # the code under test asked for; counting it would make the figure depend on the
        # fixture, not the code.
        if not _TRANSACTION_CONTROL.match(statement):
            counter.statements.append(statement)

    event.listen(target, "before_cursor_execute", _before)
    try:
        yield counter
    finally:
        event.remove(target, "before_cursor_execute", _before)
