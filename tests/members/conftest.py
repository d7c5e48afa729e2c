"""Fixtures for the members tests: the app with cheap Argon2 parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from agora.app import create_app
from agora.config import Settings
from agora.db.session import Database
from agora.members.deps import Members
from tests.members.builders import FAST_ARGON2


def fast_settings(database_url: str, **overrides: object) -> Settings:
    """Test settings. Argon2 is cheap here ONLY; the production defaults are OWASP's and
    tests/members/test_security.py checks them."""
    return Settings(
        database_url=database_url,
        env="test",
        password_hash_memory_kib=FAST_ARGON2["memory_kib"],
        password_hash_time_cost=FAST_ARGON2["time_cost"],
        password_hash_parallelism=FAST_ARGON2["parallelism"],
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
def settings(database_url: str) -> Settings:
    return fast_settings(database_url)


@pytest.fixture
def app(settings: Settings, database: Database) -> FastAPI:
    return create_app(settings, database=database)


@pytest.fixture
def members(app: FastAPI) -> Members:
    m: Members = app.state.members
    return m


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
