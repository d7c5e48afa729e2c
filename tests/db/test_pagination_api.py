"""Pagination through HTTP: query parameters, bounds (422) and bad cursors (400)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from agora.app import create_app
from agora.config import Settings
from agora.db.api import ReadUoW, install_error_handlers, install_units_of_work
from agora.db.cursors import CursorCodec, Position
from agora.db.filters import contains, given
from agora.db.pagination import (
    CursorPage,
    CursorQuery,
    Page,
    PageQuery,
    PaginationConfig,
    paginate,
    paginate_keyset,
)
from agora.db.session import Database
from agora.db.uow import UnitOfWork
from tests.db.models import Article, Author

SECRET = "api-secret"


class ArticleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    score: int


def make_app(database: Database) -> FastAPI:
    app = FastAPI()
    app.state.db = database
    app.state.pagination = PaginationConfig(
        secret=SECRET, default_limit=3, max_limit=5, max_offset=6
    )
    install_error_handlers(app)
    install_units_of_work(app)

    @app.get("/articles", response_model=Page[ArticleRead])
    async def list_articles(uow: ReadUoW, page: PageQuery, q: str | None = None) -> Any:
        stmt = select(Article).where(*given(contains(Article.title, q, max_length=10)))
        return await paginate(uow.session, stmt.order_by(Article.id), page)

    @app.get("/articles/by-score", response_model=CursorPage[ArticleRead])
    async def by_score(uow: ReadUoW, page: CursorQuery) -> Any:
        return await paginate_keyset(
            uow.session, select(Article), page, order_by=[Article.score.desc(), Article.title]
        )

    @app.get("/articles/by-title", response_model=CursorPage[ArticleRead])
    async def by_title(uow: ReadUoW, page: CursorQuery) -> Any:
        return await paginate_keyset(uow.session, select(Article), page, order_by=[Article.title])

    return app


@pytest.fixture
async def http(tk_database: Database) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=make_app(tk_database))
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def articles(tk_uow: UnitOfWork) -> list[Article]:
    author = Author(name="Ann", email="ann@example.com")
    tk_uow.session.add(author)
    await tk_uow.flush()
    rows = [Article(title=f"t{i}", score=i % 3, author_id=author.id) for i in range(8)]
    tk_uow.session.add_all(rows)
    await tk_uow.commit()
    return rows


async def test_offset_page_as_json(http: AsyncClient, articles: list[Article]) -> None:
    response = await http.get("/articles", params={"offset": 3})
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "items": [{"id": a.id, "title": a.title, "score": a.score} for a in articles[3:6]],
        "total": 8,
        "offset": 3,
        "limit": 3,  # the configured default
        "has_more": True,
    }


@pytest.mark.parametrize(
    ("query", "error", "fragment"),
    [
        ({"limit": 0}, "InvalidPagination", "between 1 and 5"),
        ({"limit": 6}, "InvalidPagination", "between 1 and 5"),
        ({"offset": -1}, "InvalidPagination", "negative"),
        ({"offset": 7}, "InvalidPagination", "`cursor` parameter"),
        ({"limit": "ten"}, "ValidationError", "integer"),
        ({"q": "x" * 11}, "SearchTooLong", "10 characters"),
    ],
)
async def test_out_of_bounds_parameters_are_422(
    http: AsyncClient, articles: list[Article], query: dict[str, Any], error: str, fragment: str
) -> None:
    response = await http.get("/articles", params=query)
    assert response.status_code == 422
    assert response.json()["error"] == error
    assert fragment in str(response.json()["detail"])


async def get_page(http: AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    response = await http.get(path, params={k: v for k, v in params.items() if v is not None})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_walking_cursors_forwards_and_back(
    http: AsyncClient, tk_uow: UnitOfWork, articles: list[Article]
) -> None:
    pages = [await get_page(http, "/articles/by-score", limit=3)]
    while pages[-1]["next_cursor"]:
        pages.append(await get_page(http, "/articles/by-score", cursor=pages[-1]["next_cursor"]))
    expected = list(
        await tk_uow.session.scalars(
            select(Article.id).order_by(Article.score.desc(), Article.title, Article.id)
        )
    )
    assert [item["id"] for page in pages for item in page["items"]] == expected
    assert [len(page["items"]) for page in pages] == [3, 3, 2]

    back = await get_page(http, "/articles/by-score", cursor=pages[-1]["prev_cursor"])
    assert back["items"] == pages[1]["items"]


async def test_a_cursor_of_another_listing_is_400(
    http: AsyncClient, articles: list[Article]
) -> None:
    page = await get_page(http, "/articles/by-score", limit=2)
    response = await http.get("/articles/by-title", params={"cursor": page["next_cursor"]})
    assert response.status_code == 400
    assert response.json()["error"] == "InvalidCursor"
    assert "another listing" in response.json()["detail"]


def bad_cursors(good: str) -> list[str]:
    foreign = CursorCodec("not our secret").encode(Position((2, "t2", 3), False), "f" * 16)
    return [
        good[:-1] + ("A" if good[-1] != "A" else "B"),  # tampered signature
        good[: len(good) // 2],  # truncated
        "not-a-cursor",
        "%00%ff",
        foreign,  # signed with another secret
        good * 40,  # too long
    ]


@pytest.mark.parametrize("case", range(6))
async def test_bad_cursors_are_400_never_500(
    http: AsyncClient, articles: list[Article], case: int
) -> None:
    good = (await get_page(http, "/articles/by-score", limit=2))["next_cursor"]
    response = await http.get("/articles/by-score", params={"cursor": bad_cursors(good)[case]})
    assert response.status_code == 400
    assert response.json()["error"] == "InvalidCursor"


async def test_cursor_limit_is_bounded_too(http: AsyncClient, articles: list[Article]) -> None:
    response = await http.get("/articles/by-score", params={"limit": 50})
    assert (response.status_code, response.json()["error"]) == (422, "InvalidPagination")


def test_create_app_configures_pagination_from_settings() -> None:
    settings = Settings(
        env="test", secret_key="k" * 40, page_default_limit=7, page_max_limit=9, page_max_offset=11
    )
    config = create_app(settings).state.pagination
    assert isinstance(config, PaginationConfig)
    assert (config.secret, config.default_limit, config.max_limit, config.max_offset) == (
        "k" * 40,
        7,
        9,
        11,
    )


def test_documented_example_runs(repo_root: Path, tmp_path: Path) -> None:
    """The script in docs/data-layer.md "Pagination and filters" runs and its asserts hold."""
    text = (repo_root / "docs" / "data-layer.md").read_text()
    section = text.split("## Pagination and filters", 1)[1].split("\n## ", 1)[0]
    script = re.findall(r"```python\n(.*?)```", section, re.S)[-1]
    path = tmp_path / "example.py"
    path.write_text(script)
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
