"""Application shell: health endpoints, one error format, OpenAPI."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel

from agora.app import create_app
from agora.config import Settings
from agora.db.errors import Conflict


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """Run the app's lifespan (engine created and disposed) around a client."""
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_live_needs_no_database(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/missing/dir/x.db")
    async with serving(create_app(settings)) as http:
        response = await http.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_pings_the_database(client: AsyncClient, backend: str) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": backend}


async def test_ready_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    for url in (
        f"sqlite:///{tmp_path}/missing/dir/x.db",
        "postgresql://postgres@127.0.0.1:1/nowhere",
    ):
        app = create_app(Settings(database_url=url, health_timeout=2))
        async with serving(app) as http:
            response = await http.get("/health/ready")
        assert response.status_code == 503, url
        assert response.headers["retry-after"] == "1"
        body = response.json()
        assert body["error"] == "DatabaseUnavailable"
        assert "unreachable" in body["detail"]


class Item(BaseModel):
    name: str
    quantity: int


def _app_with_failing_routes(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.post("/items")
    async def create_item(item: Item) -> Item:
        return item

    @app.get("/conflict")
    async def conflict() -> None:
        raise Conflict("already there")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    return app


async def test_every_error_has_the_same_body(settings: Settings) -> None:
    async with serving(_app_with_failing_routes(settings)) as http:
        missing = await http.get("/nope")
        invalid = await http.post("/items", json={"name": "x", "quantity": "many"})
        conflict = await http.get("/conflict")
        boom = await http.get("/boom")
        wrong_method = await http.delete("/conflict")

    assert missing.status_code == 404
    assert missing.json() == {"error": "NotFound", "detail": "Not Found"}
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "ValidationError"
    assert invalid.json()["detail"][0]["loc"] == ["body", "quantity"]
    assert conflict.status_code == 409
    assert conflict.json() == {"error": "Conflict", "detail": "already there"}
    assert boom.status_code == 500
    assert boom.json() == {"error": "InternalError", "detail": "Internal server error"}
    assert "passwd" not in boom.text
    assert "Traceback" not in boom.text
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "MethodNotAllowed"


async def test_openapi_is_served(client: AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["info"]["title"] == "Agora"
    assert "/health/ready" in spec["paths"]
    # Authenticated routes offer the OAuth2 password flow (Swagger UI's "Authorize").
    scheme = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    assert spec["paths"]["/api/v1/credits/transfers"]["post"]["security"] == [
        {"OAuth2PasswordBearer": []}
    ]
    # The error statuses a route's dependencies imply are documented, also where the token
    # is only reached through the caller's one dependency (its 401).
    ledger = spec["paths"]["/api/v1/credits/transfers"]["get"]["responses"]
    assert set(ledger) == {"200", "400", "401", "422", "503"}
    # The two hottest reads call what their dependencies would have and document what those
    # would imply: the token's scheme (optional on `/users/{id}`), 401 and 503.
    for path, statuses in (
        ("/api/v1/users/me", {"200", "401", "503"}),
        ("/api/v1/users/{user_id}", {"200", "401", "404", "422", "503"}),
    ):
        operation = spec["paths"][path]["get"]
        assert operation["security"] == [{"OAuth2PasswordBearer": []}], path
        assert set(operation["responses"]) == statuses, path


async def test_the_lifespan_tunes_the_collector_and_gives_it_back(tmp_path: Path) -> None:
    before = (gc.get_threshold(), gc.get_freeze_count())
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db"))
    async with serving(app) as http:
        assert (await http.get("/health/live")).status_code == 200
        # What startup built is out of the collector's way; passes are rarer.
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold() == (10_000, *before[0][1:])
        # A second app in the same process (overlapping lifespans) changes nothing more...
        async with serving(create_app(Settings(database_url=f"sqlite:///{tmp_path}/y.db"))):
            assert gc.get_threshold()[0] == 10_000
        # ...and leaving it does not undo the first app's settings.
        assert gc.get_threshold()[0] == 10_000
        assert gc.get_freeze_count() > 10_000
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


async def test_collector_tuning_can_be_switched_off(tmp_path: Path) -> None:
    before = (gc.get_threshold(), gc.get_freeze_count())
    settings = Settings(database_url=f"sqlite:///{tmp_path}/x.db", gc_freeze=False, gc_threshold=0)
    async with serving(create_app(settings)):
        assert (gc.get_threshold(), gc.get_freeze_count()) == before
