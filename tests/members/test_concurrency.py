"""Races decided by the database: concurrent sign-ups with one email.

Real separate connections and real commits (not the rolled-back test transaction), on the
migrated test database of each backend; the rows are deleted afterwards.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agora.app import create_app
from agora.db.session import Database
from agora.members.repository import UserRepository
from agora.models.user import User
from tests.members.builders import PASSWORD
from tests.members.conftest import fast_settings
from tests.support.databases import committed_database as real_database

RACERS = 20
EMAIL = "race@example.com"


async def _cleanup(conn: AsyncConnection) -> None:  # user_profile rows go by ON DELETE CASCADE
    await conn.execute(delete(User).where(User.username.like("racer%")))


@pytest.fixture
async def committed_database(database_url: str) -> AsyncIterator[Database]:
    async with real_database(database_url, cleanup=_cleanup, connections=RACERS) as db:
        yield db


@pytest.mark.parametrize("precheck", [True, False], ids=["with-precheck", "constraint-only"])
async def test_concurrent_sign_ups_with_one_email_give_one_201(
    database_url: str,
    committed_database: Database,
    monkeypatch: pytest.MonkeyPatch,
    precheck: bool,
) -> None:
    if not precheck:
        # Every request passes the friendly pre-check, as if all raced past it at once: only
        # the unique constraint (uq_user_email -> EmailTaken) can refuse them.
        async def never(self: UserRepository, email: str) -> bool:
            return False

        monkeypatch.setattr(UserRepository, "exists_email", never)
    app = create_app(fast_settings(database_url), database=committed_database)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:

        async def sign_up(n: int) -> tuple[int, str | None]:
            body = {"email": EMAIL, "username": f"racer{n}", "password": PASSWORD}
            response = await http.post("/api/v1/users", json=body)
            return response.status_code, response.json().get("error")

        results = await asyncio.gather(*(sign_up(n) for n in range(RACERS)))

    assert Counter(results) == {(201, None): 1, (409, "EmailTaken"): RACERS - 1}
    async with committed_database.uow(read_only=True) as uow:
        rows = (await uow.session.scalars(select(User).where(User.email == EMAIL))).all()
    assert len(rows) == 1
