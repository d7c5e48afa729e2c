"""Login rate limits: per account and per client address, 429 with Retry-After."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from agora.app import create_app
from agora.db.session import Database
from agora.db.uow import UnitOfWork
from agora.members.deps import Members
from tests.members.builders import PASSWORD, make_user
from tests.members.conftest import fast_settings

TOKEN = "/api/v1/auth/token"
REDIS_URL = "redis://127.0.0.1:6379/0"


@asynccontextmanager
async def _client(app: FastAPI, address: str = "203.0.113.7") -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app, client=(address, 40000))
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def _app(database_url: str, database: Database, **limits: str) -> FastAPI:
    return create_app(fast_settings(database_url, **limits), database=database)


async def test_too_many_attempts_on_one_account_are_429(
    database_url: str, database: Database, uow: UnitOfWork
) -> None:
    await make_user(uow, username="alice")
    app = _app(database_url, database, login_limit_per_account="3/minute")
    async with _client(app) as http:
        codes = [
            (
                await http.post(TOKEN, data={"username": "alice", "password": "wrong pw!"})
            ).status_code
            for _ in range(3)
        ]
        assert codes == [401, 401, 401]
        # Even the right password, and even through the email: the account is the key.
        blocked = await http.post(
            TOKEN, data={"username": "alice@example.com", "password": PASSWORD}
        )
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "TooManyLoginAttempts"
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    # Another address is limited too (the account key is shared), another account is not.
    async with _client(app, "198.51.100.9") as http:
        assert (
            await http.post(TOKEN, data={"username": "alice", "password": PASSWORD})
        ).status_code == 429


async def test_unknown_accounts_are_limited_like_real_ones(
    database_url: str, database: Database
) -> None:
    app = _app(database_url, database, login_limit_per_account="2/minute")
    async with _client(app) as http:
        codes = [
            (await http.post(TOKEN, data={"username": "ghost", "password": PASSWORD})).status_code
            for _ in range(3)
        ]
    assert codes == [401, 401, 429]


async def test_too_many_attempts_from_one_address_are_429(
    database_url: str, database: Database, uow: UnitOfWork
) -> None:
    await make_user(uow, username="bob")
    app = _app(database_url, database, login_limit_per_address="4/minute")
    async with _client(app, "192.0.2.1") as http:
        for n in range(4):
            response = await http.post(TOKEN, data={"username": f"guess{n}", "password": PASSWORD})
            assert response.status_code == 401
        response = await http.post(TOKEN, data={"username": "bob", "password": PASSWORD})
        assert response.status_code == 429
        assert "retry-after" in response.headers
    async with _client(app, "192.0.2.2") as http:
        assert (
            await http.post(TOKEN, data={"username": "bob", "password": PASSWORD})
        ).status_code == 200


def _redis_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="no Redis at 127.0.0.1:6379")
async def test_processes_share_the_limit_through_redis(
    database_url: str, database: Database, uow: UnitOfWork
) -> None:
    """Two apps (as two worker processes would be) with AGORA_REDIS_URL share one budget."""
    name = f"r{uuid.uuid4().hex[:12]}"  # fresh keys: Redis outlives the test run
    user_id = (await make_user(uow, username=name)).id
    settings = fast_settings(database_url, redis_url=REDIS_URL, login_limit_per_account="3/minute")
    first, second = create_app(settings, database=database), create_app(settings, database=database)
    address = f"10.{uuid.uuid4().int % 250}.0.1"
    try:
        async with _client(first, address) as a, _client(second, address) as b:
            codes = []
            for http in (a, b, a, b):
                response = await http.post(TOKEN, data={"username": name, "password": "wrong pw!"})
                codes.append(response.status_code)
        assert codes == [401, 401, 401, 429]
    finally:
        for app in (first, second):
            members: Members = app.state.members
            await members.login_limiter.clear(account=f"user:{user_id}", address=address)
            await members.aclose()
