"""Agora behind a real PgBouncer in transaction pooling mode (`AGORA_DATABASE_PGBOUNCER`).

PgBouncer hands each transaction whichever server connection is free, so several clients
here share fewer server connections (pool of 3 for 8 clients) and consecutive statements of
one client run on different backends: a named prepared statement kept across transactions
would be missing or duplicated there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from agora.app import create_app
from agora.db.engine import make_engine
from tests.members.conftest import fast_settings
from tests.support import pgbouncer as bouncer
from tests.support.databases import TestDatabases, postgres_server_url, require_postgres, upgrade

PASSWORD = "correct horse battery"
CLIENTS = 8


@pytest.fixture
async def bouncer_url(databases: TestDatabases, tmp_path: Path) -> AsyncIterator[str]:
    reason = bouncer.available()
    if reason is not None:
        if require_postgres():
            pytest.fail(reason)
        pytest.skip(reason)
    url = await databases.fresh_url("postgresql")  # skips/fails like every PostgreSQL test
    await upgrade(url)
    name = make_url(url).database
    assert name is not None
    server = postgres_server_url()
    with bouncer.pgbouncer(
        tmp_path / "pgbouncer", server_port=server.port or 5432, databases={"agora": name}
    ) as port:
        yield str(make_url(url).set(host="127.0.0.1", port=port, database="agora"))


async def test_the_default_startup_packet_is_refused_by_pgbouncer(bouncer_url: str) -> None:
    """Why the setting exists: statement_timeout in the startup packet is refused."""
    engine = make_engine(bouncer_url)
    try:
        with pytest.raises(DBAPIError, match="unsupported startup parameter: statement_timeout"):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_the_api_works_through_pgbouncer_with_concurrent_clients(bouncer_url: str) -> None:
    settings = fast_settings(bouncer_url, database_pgbouncer=True, pool_size=4)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            await _scenario(http, bouncer_url)


async def _sign_up(http: AsyncClient, name: str) -> tuple[int, dict[str, str]]:
    created = await http.post(
        "/api/v1/users",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    token = await http.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return created.json()["id"], {"Authorization": f"Bearer {token.json()['access_token']}"}


async def _scenario(http: AsyncClient, url: str) -> None:
    seller_id, seller = await _sign_up(http, "seller")
    conn = await asyncpg.connect(str(make_url(url).set(drivername="postgresql")))
    try:  # through PgBouncer too: the first superuser is made by hand, as in production
        await conn.execute('UPDATE "user" SET is_superuser = true WHERE id = $1', seller_id)
    finally:
        await conn.close()
    product = await http.post(
        "/api/v1/products",
        json={"name": "Lamp", "category": "home", "price": "2.50", "stock": 100},
        headers=seller,
    )
    assert product.status_code == 201, product.text
    product_id = product.json()["id"]

    async def client(n: int) -> None:
        user_id, auth = await _sign_up(http, f"buyer{n}")
        grant = await http.post(
            "/api/v1/credits/grants", json={"to_user_id": user_id, "amount": "10"}, headers=seller
        )
        assert grant.status_code == 201, grant.text
        for attempt in range(2):  # a retry with the same key replays the first answer
            order = await http.post(
                "/api/v1/orders",
                json={"items": [{"product_id": product_id, "quantity": 1}]},
                headers={**auth, "Idempotency-Key": f"order-of-buyer-{n}"},
            )
            assert order.status_code == 201, order.text
            assert (order.headers.get("Idempotent-Replayed") == "true") == (attempt == 1)
        transfer = await http.post(
            "/api/v1/credits/transfers",
            json={"to_user_id": seller_id, "amount": "1.25"},
            headers={**auth, "Idempotency-Key": f"transfer-of-buyer-{n}"},
        )
        assert transfer.status_code == 201, transfer.text
        post = await http.post("/api/v1/posts", json={"title": f"Hello {n}"}, headers=auth)
        assert post.status_code == 201, post.text
        for path in ("/api/v1/users/me", "/api/v1/credits/transfers", "/api/v1/orders"):
            assert (await http.get(path, headers=auth)).status_code == 200

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))

    stock = (await http.get(f"/api/v1/products/{product_id}")).json()["stock"]
    assert stock == 100 - CLIENTS  # one order each, retries did not order twice
    orders = (await http.get("/api/v1/orders", headers=seller)).json()
    assert orders["total"] == CLIENTS
    me = (await http.get("/api/v1/users/me", headers=seller)).json()
    assert me["credits"] == f"{1.25 * CLIENTS:.2f}"
    posts = (await http.get("/api/v1/posts", params={"limit": 100})).json()
    assert {p["title"] for p in posts["items"]} == {f"Hello {n}" for n in range(CLIENTS)}
