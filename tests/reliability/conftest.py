"""Fixtures of the reliability suite: a fresh migrated database per test (these tests commit
for real and load the server; they must not disturb the shared, rolled-back test databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI

from agora.app import create_app
from agora.config import Settings
from tests.members.builders import FAST_ARGON2
from tests.reliability.world import SECRET
from tests.support.databases import TestDatabases, upgrade


@pytest.fixture
async def fresh_url(backend: str, databases: TestDatabases) -> str:
    """A new database of the backend under test, migrated to head."""
    url = await databases.fresh_url(backend)
    await upgrade(url)
    return url


@pytest.fixture
async def pg_url(databases: TestDatabases) -> str:
    """A new PostgreSQL database, migrated to head (for PostgreSQL-only behaviour)."""
    url = await databases.fresh_url("postgresql")
    await upgrade(url)
    return url


def app_settings(url: str, **overrides: object) -> Settings:
    return Settings(
        database_url=url,
        env="test",
        secret_key=SECRET,
        access_log=False,
        password_hash_memory_kib=FAST_ARGON2["memory_kib"],
        password_hash_time_cost=FAST_ARGON2["time_cost"],
        **overrides,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    """The app's lifespan: its own engine and pool, as in production."""
    async with app.router.lifespan_context(app):
        yield app


def make_app(url: str, **overrides: object) -> FastAPI:
    return create_app(app_settings(url, **overrides))
