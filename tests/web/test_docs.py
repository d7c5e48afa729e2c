"""`/docs` and `/redoc` load every asset from this server, never from a CDN."""

from __future__ import annotations

import re

import pytest
from httpx import AsyncClient

# src/href attributes and url(...) references in the HTML, plus any absolute URL at all.
ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*['"]?([^'")]+)""")
ABSOLUTE = re.compile(r"""https?://[^\s"'<>)]+""")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/docs", {"/static/docs/swagger-ui-bundle.js", "/static/docs/swagger-ui.css"}),
        ("/redoc", {"/static/docs/redoc.standalone.js"}),
    ],
)
async def test_docs_use_local_assets_only(
    client: AsyncClient, path: str, expected: set[str]
) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert ABSOLUTE.findall(page.text) == []  # nothing fetched from another host
    assets = {a or b for a, b in ASSET.findall(page.text)}
    assert expected <= assets
    assert "/openapi.json" in page.text
    for asset in assets:
        assert asset.startswith("/"), asset
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 1000 or asset.endswith(".png"), asset


async def test_swagger_assets_are_swagger_ui_5(client: AsyncClient) -> None:
    # Swagger UI 4 refuses FastAPI's OpenAPI 3.1 documents: the bundle must be version 5.
    bundle = await client.get("/static/docs/swagger-ui-bundle.js")
    assert bundle.headers["content-type"] in {"text/javascript", "application/javascript"} or (
        "javascript" in bundle.headers["content-type"]
    )
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")
    assert re.search(r'"5\.\d+\.\d+"', bundle.text)


async def test_redoc_may_not_fetch_outside_images(client: AsyncClient) -> None:
    # ReDoc's bundle shows a logo from its vendor's CDN; the page forbids outside images.
    page = await client.get("/redoc")
    assert page.headers["content-security-policy"] == "img-src 'self' data:"


async def test_docs_pages_stay_out_of_the_schema(client: AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not {"/", "/docs", "/redoc", "/docs/oauth2-redirect"} & set(paths)
    assert not any(p.startswith(("/admin", "/static")) for p in paths)


async def test_oauth2_redirect_page(client: AsyncClient) -> None:
    page = await client.get("/docs/oauth2-redirect")
    assert page.status_code == 200
    assert ABSOLUTE.findall(page.text) == []
