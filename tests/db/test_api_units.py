"""`ReadUoW` / `WriteUoW` and `UnitsOfWorkMiddleware`: units close before the response starts.

On a real `Database` (separate connections, real commits), on both backends: the pool's
checked-out count is read when the status line leaves, so a unit still holding its
connection (or an open transaction) at that moment fails the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Request
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agora.db.api import (
    ReadUoW,
    WriteUoW,
    install_error_handlers,
    install_units_of_work,
    read_unit,
    write_unit,
)
from agora.db.errors import Conflict
from agora.db.session import Database
from agora.db.uow import UnitOfWork
from tests.db.models import Author


class PoolAtResponseStart:
    """Outside the units' middleware: records the pool's checked-out connections when the
    status line leaves, or when an exception goes out to the server error handler (500)."""

    def __init__(self, app: ASGIApp, *, engine: AsyncEngine, seen: list[int]) -> None:
        self.app, self.engine, self.seen = app, engine, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append(self.engine.pool.checkedout())  # type: ignore[attr-defined]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        except Exception:  # on its way to the server error handler, which answers 500
            self.seen.append(self.engine.pool.checkedout())  # type: ignore[attr-defined]
            raise


async def ghostwriter(request: Request) -> UnitOfWork:
    """A dependency that writes through the request's unit, not through `Depends`."""
    uow = await write_unit(request)
    uow.session.add(Author(name="ghost", email="ghost@example.com"))
    await uow.flush()  # not committed: only the endpoint commits
    return await read_unit(request)


# A module-level alias: the endpoints below are built in a function, and their annotations
# (strings here) are resolved in the module's namespace.
Ghostwriter = Annotated[UnitOfWork, Depends(ghostwriter)]


def make_app(database: Database, seen: list[int], *, units: bool = True) -> FastAPI:
    app = FastAPI()
    app.state.db = database
    install_error_handlers(app)
    if units:
        install_units_of_work(app)
    app.add_middleware(PoolAtResponseStart, engine=database.engine, seen=seen)

    @app.get("/authors/count")
    async def count(uow: ReadUoW) -> int:
        return int(await uow.session.scalar(select(func.count()).select_from(Author)) or 0)

    @app.post("/authors", status_code=201)
    async def add(uow: WriteUoW, reader: ReadUoW, name: str, fail: str = "") -> int:
        uow.session.add(Author(name=name, email=f"{name}@example.com"))
        await uow.flush()  # the row is in the open transaction, and the connection held
        await reader.session.scalar(select(func.count()).select_from(Author))  # a 2nd unit
        if fail == "conflict":
            raise Conflict("refused after the flush")
        if fail == "bug":
            raise RuntimeError("a bug after the flush")
        await uow.commit()
        return 1

    @app.post("/authors/ghost", status_code=201)
    async def add_ghost(
        dependency_reader: Ghostwriter,
        uow: WriteUoW,
        reader: ReadUoW,
    ) -> dict[str, bool]:
        await uow.commit()  # commits the dependency's flush only if it is the same unit
        return {"same_read_unit": dependency_reader is reader}

    return app


@pytest.fixture
async def seen() -> list[int]:
    return []


@pytest.fixture
async def http(committed_database: Database, seen: list[int]) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=make_app(committed_database, seen), raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_reads_and_writes_return_their_connections_before_the_response(
    http: AsyncClient, toolkit_engine: AsyncEngine, seen: list[int]
) -> None:
    idle = toolkit_engine.pool.checkedout()  # type: ignore[attr-defined]
    assert (await http.post("/authors", params={"name": "ann"})).status_code == 201
    assert (await http.get("/authors/count")).json() == 1
    assert seen == [idle, idle]


@pytest.mark.parametrize(("fail", "status"), [("conflict", 409), ("bug", 500)])
async def test_a_failed_request_is_rolled_back_before_its_error_response(
    http: AsyncClient, toolkit_engine: AsyncEngine, seen: list[int], fail: str, status: int
) -> None:
    idle = toolkit_engine.pool.checkedout()  # type: ignore[attr-defined]
    response = await http.post("/authors", params={"name": "bob", "fail": fail})
    assert response.status_code == status
    assert seen == [idle]
    assert (await http.get("/authors/count")).json() == 0  # the flushed row was rolled back
    assert toolkit_engine.pool.checkedout() == idle  # type: ignore[attr-defined]


async def test_the_dependencies_say_what_is_missing_without_the_middleware(
    committed_database: Database,
) -> None:
    transport = ASGITransport(app=make_app(committed_database, [], units=False))
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(RuntimeError, match=r"install_units_of_work\(app\)"):
            await client.get("/authors/count")


async def test_a_dependency_and_its_endpoint_share_the_request_units(
    http: AsyncClient, toolkit_engine: AsyncEngine, seen: list[int]
) -> None:
    idle = toolkit_engine.pool.checkedout()  # type: ignore[attr-defined]
    response = await http.post("/authors/ghost")
    assert response.status_code == 201, response.text
    assert response.json() == {"same_read_unit": True}
    # The endpoint's commit stored the dependency's flush: one write unit, not two.
    assert (await http.get("/authors/count")).json() == 1
    assert seen == [idle, idle]  # and every unit was closed before each response
