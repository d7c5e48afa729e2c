"""`agora.routing.PrefixRouter`: requests outside a router's prefix skip its routes, and
nothing else about routing changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from httpx import ASGITransport, AsyncClient
from starlette.routing import Match
from starlette.types import Scope

from agora.app import create_app
from agora.config import Settings
from agora.routing import PrefixRouter


def _tiny_app() -> FastAPI:
    things = PrefixRouter(prefix="/things")
    by_owner = PrefixRouter(prefix="/owners/{owner_id}/things")
    plain = APIRouter()

    @things.get("")
    async def list_things() -> list[str]:
        return ["a"]

    @things.get("/{thing_id}")
    async def read_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @by_owner.get("")
    async def owner_things(owner_id: int) -> dict[str, int]:
        return {"owner": owner_id}

    @plain.get("/ping")
    async def ping() -> str:
        return "pong"

    app = FastAPI()
    for router in (things, by_owner, plain):
        app.include_router(router, prefix="/api")
    return app


async def test_routes_under_a_prefix_router_answer_as_before() -> None:
    async with AsyncClient(transport=ASGITransport(app=_tiny_app()), base_url="http://t") as http:
        assert (await http.get("/api/things")).json() == ["a"]
        assert (await http.get("/api/things/7")).json() == {"id": 7}
        # A path parameter in the prefix: no shortcut, still matched.
        assert (await http.get("/api/owners/3/things")).json() == {"owner": 3}
        # Routes of later routers are still reached.
        assert (await http.get("/api/ping")).json() == "pong"
        # Wrong method, wrong parameter type, trailing slash, unknown path: FastAPI's answers.
        assert (await http.post("/api/things")).status_code == 405
        assert (await http.get("/api/things/x")).status_code == 422
        slash = await http.get("/api/things/", follow_redirects=False)
        assert slash.status_code == 307
        assert slash.headers["location"] == "http://t/api/things"
        assert (await http.get("/api/nothing")).status_code == 404


async def test_a_root_path_in_front_of_the_prefix_still_matches() -> None:
    transport = ASGITransport(app=_tiny_app(), root_path="/shop")
    async with AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/shop/api/things/5")).json() == {"id": 5}


async def test_a_request_tries_no_route_of_a_router_outside_its_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agora's app: a request to the credits API is not matched against the routes of the
    users, products, orders and posts routers included before or after it."""
    tried: list[str] = []
    original = APIRoute.matches

    def counting(self: APIRoute, scope: Scope) -> tuple[Match, Scope]:
        tried.append(self.path)
        return original(self, scope)

    monkeypatch.setattr(APIRoute, "matches", counting)
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/routing.db"))
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http,
    ):
        response = await http.get("/api/v1/credits/transfers")  # no token: 401
    assert response.status_code == 401
    assert "/credits/transfers" in tried
    skipped = ("/users", "/products", "/orders", "/posts", "/health")
    assert [path for path in tried if path.startswith(skipped)] == []
