"""The member reads that run as `Prepared`s (`GET /users/{id}`, `GET /users/me`, the
token checks) answer the same on the direct path as through the session, on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker

from agora.app import create_app
from agora.db.engine import autocommit_engine
from agora.db.prepared import Prepared
from agora.db.session import Database
from agora.models.user import User, UserStatus
from tests.members.builders import auth, make_user
from tests.members.conftest import fast_settings
from tests.support.databases import committed_database as real_database


async def _cleanup(conn: AsyncConnection) -> None:  # profiles go by ON DELETE CASCADE
    await conn.execute(delete(User).where(User.username.like("direct%")))


@pytest.fixture
async def committed_database(database_url: str) -> AsyncIterator[Database]:
    async with real_database(database_url, cleanup=_cleanup, connections=5) as db:
        yield db


async def test_user_reads_answer_the_same_on_both_paths(
    database_url: str, committed_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = committed_database
    async with db.uow() as uow:
        alice = await make_user(uow, username="direct-alice", full_name="Alice")
        assert alice.profile is not None
        alice.profile.bio = "Sells bikes"
        alice.profile.location = "Lyon"
        await uow.commit()
    async with db.uow() as uow:
        bob = await make_user(uow, username="direct-bob", credits=1234)
    async with db.uow() as uow:
        boss = await make_user(uow, username="direct-boss", is_superuser=True)
    async with db.uow() as uow:
        frozen = await make_user(uow, username="direct-frozen", status=UserStatus.suspended)
    settings = fast_settings(database_url)
    requests: list[tuple[str, dict[str, str]]] = [
        (f"/api/v1/users/{alice.id}", {}),
        (f"/api/v1/users/{bob.id}", {}),
        (f"/api/v1/users/{bob.id}", auth(settings, bob)),  # self: private view
        (f"/api/v1/users/{bob.id}", auth(settings, boss)),  # a superuser: private view
        (f"/api/v1/users/{bob.id}", auth(settings, alice)),  # someone else: public view
        (f"/api/v1/users/{bob.id}", auth(settings, frozen)),  # a suspended user's token: 401
        ("/api/v1/users/me", auth(settings, alice)),
        ("/api/v1/users/me", auth(settings, frozen)),
        ("/api/v1/users/999999999", {}),
    ]

    direct_runs = 0
    run = Prepared._run_pooled

    def counted(self: Prepared, *args: Any) -> Any:
        nonlocal direct_runs
        direct_runs += 1
        return run(self, *args)

    monkeypatch.setattr(Prepared, "_run_pooled", counted)

    async def answers(database: Database) -> list[tuple[int, bytes]]:
        app = create_app(settings, database=database)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
            return [
                ((r := await http.get(path, headers=headers)).status_code, r.content)
                for path, headers in requests
            ]

    direct = await answers(db)
    assert direct_runs >= len(requests)  # every request read directly (some twice)
    # The same engine, with read sessions that may not read directly.
    plain = async_sessionmaker(autocommit_engine(db.engine), expire_on_commit=False)
    direct_runs = 0
    through_session = await answers(Database(db.engine, read_sessionmaker=plain))
    assert direct_runs == 0
    assert direct == through_session
    assert [status for status, _ in direct] == [200, 200, 200, 200, 200, 401, 200, 401, 404]
    assert b'"bio":"Sells bikes"' in direct[0][1]
    assert b'"credits"' in direct[2][1]  # private
    assert b'"credits"' not in direct[1][1]  # public
