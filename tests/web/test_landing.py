"""`/`: links to the docs, the admin, health and metrics, and the database in use."""

from __future__ import annotations

import re

from httpx import ASGITransport, AsyncClient

from agora.app import create_app
from agora.db.session import Database
from tests.members.conftest import fast_settings


async def test_landing_page_links_and_backend(client: AsyncClient, backend: str) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    links = set(re.findall(r'href="([^"]+)"', page.text))
    assert links == {"/docs", "/redoc", "/admin/", "/health/ready", "/metrics"}
    database = re.search(r'<code id="database">([^<]+)</code>', page.text)
    assert database is not None
    assert (
        database.group(1)
        == {
            "sqlite": "sqlite (aiosqlite)",
            "postgresql": "postgresql (asyncpg)",
        }[backend]
    )
    assert not re.search(r"https?://", page.text)  # no outside assets
    for link in links:  # every link answers (the admin by sending to its login page)
        assert (await client.get(link)).status_code in {200, 302}, link


async def test_landing_page_never_shows_the_database_url(database: Database) -> None:
    url = "postgresql://agora:s3cr3t-pw@db.internal:5432/agora"
    app = create_app(fast_settings(url), database=database)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        page = (await http.get("/")).text
    assert "s3cr3t-pw" not in page
    assert "db.internal" not in page
    assert "agora:" not in page


async def test_landing_page_leaves_out_disabled_metrics(
    database_url: str, database: Database
) -> None:
    app = create_app(fast_settings(database_url, metrics_enabled=False), database=database)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        page = (await http.get("/")).text
    assert 'href="/metrics"' not in page
    assert 'href="/docs"' in page
