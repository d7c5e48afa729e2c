"""Starlette + aiosqlite: Agora's `GET /api/v1/users/{id}` on a SQLite file, nothing more.

    uvicorn bench.baselines.sqlite_app:create_app --factory ...
    BENCH_SQLITE_PATH=/path/to/file.db

One aiosqlite connection (SQLite serves one process; reads do not need a pool), one query
per read (user LEFT JOIN profile), datetimes read as UTC as Agora stores them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiosqlite
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.baselines.common import USER_SELECT, error, json, user_view

USER = USER_SELECT.format(param="?")


def _utc(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def create_app() -> Starlette:
    db: aiosqlite.Connection | None = None

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        nonlocal db
        db = await aiosqlite.connect(os.environ["BENCH_SQLITE_PATH"])
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        try:
            yield
        finally:
            await db.close()

    async def health(_request: Request) -> Response:
        return json({"status": "ok"})

    async def read_user(request: Request) -> Response:
        assert db is not None
        async with db.execute(USER, (request.path_params["user_id"],)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return error(404, "UserNotFound", "user not found")
        values: dict[str, Any] = dict(row)
        values["created_at"] = _utc(values["created_at"])
        values["p_updated_at"] = _utc(values["p_updated_at"])
        return json(user_view(values, private=False))

    return Starlette(
        routes=[Route("/health", health), Route("/api/v1/users/{user_id:int}", read_user)],
        lifespan=lifespan,
    )
