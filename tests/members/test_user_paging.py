"""GET /api/v1/users by cursor (keyset) and by offset: shapes, walks, errors, bounds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from agora.app import create_app
from agora.config import Settings
from agora.db.base import utcnow
from agora.db.session import Database
from agora.db.uow import UnitOfWork
from agora.models.user import User, UserStatus
from tests.members.builders import auth, make_user
from tests.members.conftest import fast_settings

USERS = "/api/v1/users"
CURSOR_PAGE = {"items", "next_cursor", "prev_cursor", "limit"}
OFFSET_PAGE = {"items", "total", "offset", "limit", "has_more"}


async def _get(client: AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get(USERS, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _names(page: dict[str, Any]) -> list[str]:
    return [u["username"] for u in page["items"]]


async def _walk(client: AsyncClient, **params: Any) -> list[list[str]]:
    """Every page from the first, following `next_cursor`; the usernames of each page."""
    page = await _get(client, paging="cursor", **params)
    assert page["prev_cursor"] is None  # nothing before the first page
    pages = [_names(page)]
    while page["next_cursor"] is not None:
        page = await _get(client, cursor=page["next_cursor"], **params)
        pages.append(_names(page))
        assert len(pages) < 50, "the walk does not end"
    return pages


async def _make_tied_users(uow: UnitOfWork) -> list[User]:
    """Seven users, five of them created at the very same instant, one of those deleted."""
    users = [await make_user(uow, username=n) for n in ("gus", "bea", "fay", "ada", "eve")]
    users += [await make_user(uow, username=n) for n in ("cal", "dot")]
    same = utcnow().replace(microsecond=0)
    for user in users[:5]:
        user.created_at = same
    users[5].created_at = same - timedelta(days=1)
    users[6].created_at = same + timedelta(days=1)
    users[2].deleted_at = same  # fay: must never show up
    await uow.commit()
    return users


def _expected(users: list[User], *, key: str, descending: bool) -> list[str]:
    live = [u for u in users if u.deleted_at is None]
    live.sort(key=lambda u: (getattr(u, key), u.id), reverse=descending)
    return [u.username for u in live]


@pytest.mark.parametrize(
    ("order_by", "key", "descending"),
    [
        ("-created_at", "created_at", True),
        ("created_at", "created_at", False),
        ("username", "username", False),
        ("-username", "username", True),
        ("-id", "id", True),
    ],
)
@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_cursor_walk_visits_every_live_user_once_in_order(
    client: AsyncClient, uow: UnitOfWork, order_by: str, key: str, descending: bool, limit: int
) -> None:
    users = await _make_tied_users(uow)
    expected = _expected(users, key=key, descending=descending)
    pages = await _walk(client, order_by=order_by, limit=limit)
    assert [name for page in pages for name in page] == expected  # no duplicate, no skip
    assert all(len(page) == limit for page in pages[:-1])
    assert "fay" not in expected
    # Offset pages list the same users in the same order.
    offset = await _get(client, order_by=order_by, limit=100)
    assert _names(offset) == expected


async def test_the_first_cursor_page_has_the_cursor_shape(
    client: AsyncClient, uow: UnitOfWork
) -> None:
    for name in ("ann", "bob", "cat"):
        await make_user(uow, username=name)
    starts: list[dict[str, Any]] = [{"paging": "cursor"}, {"cursor": ""}]
    for params in starts:
        page = await _get(client, order_by="username", limit=2, **params)
        assert set(page) == CURSOR_PAGE
        assert (_names(page), page["limit"], page["prev_cursor"]) == (["ann", "bob"], 2, None)
        assert isinstance(page["next_cursor"], str)
    # Without a cursor, and with paging=offset, it is the offset shape.
    offsets: list[dict[str, Any]] = [{}, {"paging": "offset"}, {"offset": 0}]
    for params in offsets:
        page = await _get(client, order_by="username", limit=2, **params)
        assert set(page) == OFFSET_PAGE
        assert (page["total"], page["has_more"]) == (3, True)


async def test_prev_cursor_goes_back(client: AsyncClient, uow: UnitOfWork) -> None:
    users = await _make_tied_users(uow)
    expected = _expected(users, key="created_at", descending=True)
    params = {"order_by": "-created_at", "limit": 2}
    first = await _get(client, paging="cursor", **params)
    second = await _get(client, cursor=first["next_cursor"], **params)
    assert _names(await _get(client, cursor=second["prev_cursor"], **params)) == _names(first)
    # Walk to the end, then all the way back: every page again, in reverse.
    forward = [first, second]
    while forward[-1]["next_cursor"] is not None:
        forward.append(await _get(client, cursor=forward[-1]["next_cursor"], **params))
    assert forward[-1]["prev_cursor"] is not None
    back = [forward[-1]]
    while back[-1]["prev_cursor"] is not None:
        back.append(await _get(client, cursor=back[-1]["prev_cursor"], **params))
    assert [_names(p) for p in back] == [_names(p) for p in reversed(forward)]
    assert [n for p in forward for n in _names(p)] == expected


async def test_a_user_deleted_between_pages_neither_skips_nor_repeats(
    client: AsyncClient, uow: UnitOfWork
) -> None:
    users = await _make_tied_users(uow)
    expected = _expected(users, key="created_at", descending=True)  # before the deletion
    params = {"order_by": "-created_at", "limit": 2}
    first = await _get(client, paging="cursor", **params)
    # Delete the last user of the first page: the cursor still knows where it was.
    gone = next(u for u in users if u.username == _names(first)[-1])
    gone.deleted_at = utcnow()
    await uow.commit()
    rest: list[str] = []
    page = first
    while page["next_cursor"] is not None:
        page = await _get(client, cursor=page["next_cursor"], **params)
        rest += _names(page)
    assert _names(first) + rest == expected
    assert gone.username not in rest


async def test_status_filter_and_private_views_work_with_cursors(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    admin = await make_user(uow, username="admin", is_superuser=True)
    for name in ("sus1", "sus2", "sus3"):
        await make_user(uow, username=name, status=UserStatus.suspended)
    headers = auth(settings, admin)
    params: dict[str, Any] = {"status": "suspended", "order_by": "username", "limit": 2}
    first = (await client.get(USERS, params={**params, "paging": "cursor"}, headers=headers)).json()
    assert _names(first) == ["sus1", "sus2"]
    assert first["items"][0]["status"] == "suspended"  # private view
    params["cursor"] = first["next_cursor"]
    second = (await client.get(USERS, params=params, headers=headers)).json()
    assert (_names(second), second["next_cursor"]) == (["sus3"], None)


async def test_search_with_cursors(client: AsyncClient, uow: UnitOfWork) -> None:
    for name, full in (("alice", "Alice"), ("bob", "Bob ALIgned"), ("carol", "Carol")):
        await make_user(uow, username=name, full_name=full)
    first = await _get(client, q="ali", order_by="username", limit=1, paging="cursor")
    second = await _get(client, q="ali", order_by="username", limit=1, cursor=first["next_cursor"])
    assert (_names(first), _names(second), second["next_cursor"]) == (["alice"], ["bob"], None)


# --- errors ---------------------------------------------------------------------------------


async def _a_cursor(client: AsyncClient, uow: UnitOfWork, order_by: str = "username") -> str:
    for name in ("ann", "bob", "cat"):
        await make_user(uow, username=name)
    cursor: str = (await _get(client, paging="cursor", order_by=order_by, limit=1))["next_cursor"]
    return cursor


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: c[:-2],  # truncated signature
        lambda c: ("A" if c[0] != "A" else "B") + c[1:],  # payload changed
        lambda c: "not-a-cursor",
        lambda c: c * 40,  # oversized
    ],
)
async def test_a_tampered_cursor_is_400(client: AsyncClient, uow: UnitOfWork, mangle: Any) -> None:
    cursor = await _a_cursor(client, uow)
    response = await client.get(USERS, params={"order_by": "username", "cursor": mangle(cursor)})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "InvalidCursor"


@pytest.mark.parametrize("other", ["created_at", "-username", "id"])
async def test_a_cursor_of_another_order_is_400(
    client: AsyncClient, uow: UnitOfWork, other: str
) -> None:
    cursor = await _a_cursor(client, uow, order_by="username")
    response = await client.get(USERS, params={"order_by": other, "cursor": cursor})
    assert response.status_code == 400
    assert response.json()["error"] == "InvalidCursor"
    assert "another listing or ordering" in response.json()["detail"]


async def test_a_cursor_of_another_search_is_400(client: AsyncClient, uow: UnitOfWork) -> None:
    for name in ("alice", "alina", "bob", "bobby"):
        await make_user(uow, username=name)
    first = await _get(client, q="ali", order_by="username", limit=1, paging="cursor")
    params = {"order_by": "username", "cursor": first["next_cursor"]}
    for other in ({"q": "bob"}, {}):  # another term, or none: not this listing's next page
        response = await client.get(USERS, params=params | other)
        assert response.status_code == 400, response.text
        assert "another listing or ordering" in response.json()["detail"]
    same = await client.get(USERS, params=params | {"q": "ali"})
    assert [u["username"] for u in same.json()["items"]] == ["alina"]


@pytest.mark.parametrize(
    "params",
    [
        {"offset": 0, "cursor": "x"},
        {"offset": 5, "paging": "cursor"},
        {"cursor": "x", "paging": "offset"},
    ],
)
async def test_mixing_offset_and_cursor_paging_is_422(
    client: AsyncClient, params: dict[str, Any]
) -> None:
    response = await client.get(USERS, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "InvalidPagination"
    assert "cursor" in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "hint"),
    [
        ({"limit": 0}, "limit must be between 1 and 100"),
        ({"limit": 101, "paging": "cursor"}, "limit must be between 1 and 100"),
        ({"offset": -1}, "offset must not be negative"),
        ({"offset": 10_001}, "page with the `cursor` parameter"),
        ({"paging": "sideways"}, "offset"),
    ],
)
async def test_out_of_bounds_paging_is_422_with_a_helpful_detail(
    client: AsyncClient, params: dict[str, Any], hint: str
) -> None:
    response = await client.get(USERS, params=params)
    assert response.status_code == 422, response.text
    assert hint in str(response.json()["detail"])


@pytest.fixture
async def small_pages(database_url: str, database: Database) -> AsyncIterator[AsyncClient]:
    """The app with AGORA_PAGE_* bounds of its own: default 2, max 3, offset up to 4."""
    settings = fast_settings(
        database_url, page_default_limit=2, page_max_limit=3, page_max_offset=4
    )
    app: FastAPI = create_app(settings, database=database)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def test_the_bounds_come_from_the_settings(small_pages: AsyncClient, uow: UnitOfWork) -> None:
    for name in ("ann", "bob", "cat", "dan"):
        await make_user(uow, username=name)
    assert (await _get(small_pages))["limit"] == 2
    assert (await _get(small_pages, paging="cursor"))["limit"] == 2
    for paging in ("offset", "cursor"):
        response = await small_pages.get(USERS, params={"limit": 4, "paging": paging})
        assert response.status_code == 422
        assert "between 1 and 3" in response.json()["detail"]
    assert (await small_pages.get(USERS, params={"offset": 5})).status_code == 422
    assert (await small_pages.get(USERS, params={"offset": 4})).status_code == 200


async def test_openapi_describes_both_page_shapes(client: AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"][USERS]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    refs = {option["$ref"].rsplit("/", 1)[-1] for option in schema["anyOf"]}
    shapes = {frozenset(spec["components"]["schemas"][ref]["properties"]) for ref in refs}
    assert shapes == {frozenset(OFFSET_PAGE), frozenset(CURSOR_PAGE)}
    params = {p["name"] for p in operation["parameters"]}
    assert {"limit", "offset", "cursor", "paging", "order_by", "q", "status"} <= params
