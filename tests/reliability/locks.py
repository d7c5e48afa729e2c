"""Holding a database lock from outside the service, on either backend."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import make_url


@dataclass
class Held:
    """A lock another session holds until `release()` (idempotent)."""

    _release: Any
    released: bool = False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await self._release()


@asynccontextmanager
async def row_locks(url: str, *, table: str, ids: list[int]) -> AsyncIterator[Held]:
    """Rows of `table` locked by another session: FOR UPDATE on PostgreSQL; on SQLite, whose
    locks cover the whole database, the write lock (`BEGIN IMMEDIATE`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database or "", isolation_level=None, timeout=10)
        try:
            conn.execute("BEGIN IMMEDIATE")

            async def rollback_sqlite() -> None:
                conn.execute("ROLLBACK")  # instant; sqlite3 objects stay in their thread

            held = Held(rollback_sqlite)
            yield held
            await held.release()
        finally:
            conn.close()
        return
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    pg = await asyncpg.connect(dsn)
    try:
        await pg.execute("BEGIN")
        await pg.execute(f'SELECT 1 FROM "{table}" WHERE id = ANY($1::int[]) FOR UPDATE', ids)

        async def rollback_pg() -> None:
            await pg.execute("ROLLBACK")

        held = Held(rollback_pg)
        yield held
        await held.release()
    finally:
        await pg.close()


async def lockable_now(url: str, *, table: str, ids: list[int]) -> bool:
    """Whether another session can lock those rows at once (NOWAIT / a zero busy timeout)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database or "", isolation_level=None, timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    pg = await asyncpg.connect(dsn)
    try:
        async with pg.transaction():
            await pg.execute(
                f'SELECT 1 FROM "{table}" WHERE id = ANY($1::int[]) FOR UPDATE NOWAIT', ids
            )
        return True
    except asyncpg.LockNotAvailableError:
        return False
    finally:
        await pg.close()
