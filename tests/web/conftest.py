"""Fixtures for the web pages: the app with cheap Argon2 parameters, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient

from agora.app import create_app
from agora.config import Settings
from agora.db.session import Database
from tests.members.conftest import fast_settings


@pytest.fixture
def settings(database_url: str) -> Settings:
    return fast_settings(database_url)


@pytest.fixture
async def client(settings: Settings, database: Database) -> AsyncIterator[AsyncClient]:
    app = create_app(settings, database=database)
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
