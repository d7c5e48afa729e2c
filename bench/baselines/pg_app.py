"""Starlette + a raw asyncpg pool: Agora's user reads and credit transfers, nothing more.

    uvicorn bench.baselines.pg_app:create_app --factory ...
    BENCH_DSN=postgresql://... BENCH_SECRET_KEY=... [BENCH_POOL_SIZE=10]

One query per user read (user LEFT JOIN profile); a transfer sends the statements Agora's
service sends (recipient check, two guarded UPDATEs in ascending id order, the ledger
INSERT) in one transaction.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.baselines.common import (
    USER_SELECT,
    cents,
    error,
    json,
    token_key,
    user_id_from,
    user_view,
)

USER = USER_SELECT.format(param="$1")
ACTIVE = "SELECT id FROM \"user\" WHERE id = $1 AND status = 'active' AND deleted_at IS NULL"
MOVE = (
    'UPDATE "user" SET credits = credits + $2 WHERE id = $1 '
    "AND credits + $2 >= 0 AND credits + $2 <= 1000000000000000000 RETURNING id"
)
LEDGER = (
    "INSERT INTO credit_transfer (kind, from_user_id, to_user_id, amount, note, created_at) "
    "VALUES ('transfer', $1, $2, $3, '', now()) RETURNING id, created_at"
)


class _Refused(Exception):
    pass


def create_app() -> Starlette:
    key = token_key()
    size = int(os.environ.get("BENCH_POOL_SIZE", "10"))
    pool: asyncpg.Pool[asyncpg.Record] | None = None

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=size, max_size=size)
        try:
            yield
        finally:
            await pool.close()

    async def health(_request: Request) -> Response:
        return json({"status": "ok"})

    async def read_user(request: Request) -> Response:
        assert pool is not None
        row = await pool.fetchrow(USER, request.path_params["user_id"])
        if row is None:
            return error(404, "UserNotFound", "user not found")
        return json(user_view(row, private=False))

    async def read_me(request: Request) -> Response:
        assert pool is not None
        user_id = user_id_from(request.headers.get("authorization"), key)
        if user_id is None:
            return error(401, "InvalidToken", "invalid token")
        row = await pool.fetchrow(USER, user_id)
        if row is None or row["status"] != "active":
            return error(401, "InvalidToken", "invalid token")
        return json(user_view(row, private=True))

    async def transfer(request: Request) -> Response:
        assert pool is not None
        sender = user_id_from(request.headers.get("authorization"), key)
        if sender is None:
            return error(401, "InvalidToken", "invalid token")
        try:
            body = orjson.loads(await request.body())
            receiver, amount = int(body["to_user_id"]), int(Decimal(body["amount"]) * 100)
        except (ValueError, KeyError, TypeError, InvalidOperation):
            return error(422, "ValidationError", "bad body")
        try:
            async with pool.acquire() as conn, conn.transaction():
                if await conn.fetchval(ACTIVE, sender) is None:
                    return error(401, "InvalidToken", "invalid token")
                if await conn.fetchval(ACTIVE, receiver) is None:
                    return error(404, "RecipientNotFound", "no such member")
                for uid, delta in sorted({sender: -amount, receiver: amount}.items()):
                    if await conn.fetchval(MOVE, uid, delta) is None:
                        raise _Refused()
                row = await conn.fetchrow(LEDGER, sender, receiver, amount)
        except _Refused:
            return error(409, "InsufficientCredits", "not enough credits")
        assert row is not None
        return json(
            {
                "id": row["id"],
                "kind": "transfer",
                "from_user_id": sender,
                "to_user_id": receiver,
                "amount": cents(amount),
                "note": "",
                "order_id": None,
                "created_at": row["created_at"],
            },
            201,
        )

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/api/v1/users/me", read_me),
            Route("/api/v1/users/{user_id:int}", read_user),
            Route("/api/v1/credits/transfers", transfer, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
