"""Security suite (issue 10.8), on both databases, over every route that takes an id.

The routes are read from the app, so a new route with an id cannot escape the matrix: the
tests fail until it has a row in `FOREIGN`. Forged JWTs (`alg: none`, expired, no `exp`, bad
signature, ...) are tested in tests/members/test_auth.py::test_forged_tokens_are_401, LIKE
wildcards in tests/members/test_users.py and tests/market/test_products.py; this file adds what
was missing: the matrix, privileged fields over every body, ids and NUL bytes over every
route, limit/offset bounds over every list, the body cap, and login timing.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from httpx import ASGITransport, AsyncClient

from agora.app import create_app
from agora.config import Settings
from agora.db.session import Database
from agora.db.uow import UnitOfWork
from agora.models.user import User
from agora.openapi import api_routes
from tests.forum.builders import make_post
from tests.market.builders import make_product
from tests.members.builders import PASSWORD, auth, make_user
from tests.members.conftest import fast_settings

API = "/api/v1"
CAP = 64 * 1024
# What another (non-superuser) member gets for each route with an id, on the owner's object.
# "public" = readable by anyone (200, and no private field shown).
FOREIGN: dict[str, int | str] = {
    "GET /api/v1/users/{user_id}": "public",
    "PATCH /api/v1/users/{user_id}": 403,
    "DELETE /api/v1/users/{user_id}": 403,
    "GET /api/v1/users/{user_id}/profile": "public",
    "PUT /api/v1/users/{user_id}/profile": 403,
    "GET /api/v1/users/{user_id}/posts": "public",
    "GET /api/v1/products/{product_id}": "public",
    "PATCH /api/v1/products/{product_id}": 403,
    "DELETE /api/v1/products/{product_id}": 403,
    "GET /api/v1/orders/{order_id}": 404,
    "POST /api/v1/orders/{order_id}/pay": 404,
    "POST /api/v1/orders/{order_id}/cancel": 404,
    "GET /api/v1/posts/{post_id}": 404,  # the owner's draft
    "PATCH /api/v1/posts/{post_id}": 403,
    "DELETE /api/v1/posts/{post_id}": 403,
}
BODIES: dict[str, dict[str, Any]] = {
    "PATCH /api/v1/users/{user_id}": {"full_name": "Mallory"},
    "PUT /api/v1/users/{user_id}/profile": {"bio": "pwned"},
    "PATCH /api/v1/products/{product_id}": {"price": "0.01"},
    "PATCH /api/v1/posts/{post_id}": {"title": "pwned"},
}
_ID = re.compile(r"\{(\w+_id)\}")


def id_routes(app: FastAPI) -> dict[str, APIRoute]:
    """Every API operation with an id in its path, as "METHOD /path"."""
    found = {}
    for path, route in api_routes(app):
        if _ID.search(path):
            for method in route.methods or ():
                found[f"{method} {path}"] = route
    return found


def list_routes(app: FastAPI) -> list[str]:
    """Every GET operation without an id that takes `limit` (a listing)."""
    spec = app.openapi()
    return [
        path
        for path, operations in spec["paths"].items()
        if "get" in operations
        and not _ID.search(path)
        and any(p["name"] == "limit" for p in operations["get"].get("parameters", []))
    ]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return fast_settings(
        database_url,
        max_body_bytes=CAP,
        login_limit_per_account="100000/minute",
        login_limit_per_address="100000/minute",
    )


@pytest.fixture
def app(settings: Settings, database: Database) -> FastAPI:
    return create_app(settings, database=database)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def _world(client: AsyncClient, uow: UnitOfWork, settings: Settings) -> dict[str, Any]:
    """The owner (alice) with one object of each kind, and an intruder (mallory)."""
    alice = await make_user(uow, credits=100_00)
    mallory, carol = await make_user(uow), await make_user(uow)
    product = await make_product(uow, seller=alice, price=1_00, stock=5)
    bought = await make_product(uow, seller=carol, price=2_00, stock=5)
    draft = await make_post(uow, author=alice, is_published=False)
    published = await make_post(uow, author=alice)
    order = await client.post(
        f"{API}/orders",
        json={"items": [{"product_id": bought.id, "quantity": 1}]},
        headers=auth(settings, alice) | {"Idempotency-Key": "order-00000001"},
    )
    assert order.status_code == 201, order.text
    ids = {
        "user_id": alice.id,
        "product_id": product.id,
        "order_id": order.json()["id"],
        "post_id": published.id,
        "draft_id": draft.id,
    }
    return {"alice": alice, "mallory": mallory, "ids": ids}


async def _snapshot(
    client: AsyncClient, settings: Settings, alice: User, ids: dict[str, int]
) -> Any:
    """Everything alice can read about her objects."""
    mine = auth(settings, alice)
    paths = [
        f"{API}/users/{alice.id}",
        f"{API}/users/{alice.id}/profile",
        f"{API}/users/{alice.id}/posts?published=false",
        f"{API}/products/{ids['product_id']}",
        f"{API}/orders/{ids['order_id']}",
        f"{API}/posts/{ids['post_id']}",
        f"{API}/posts/{ids['draft_id']}",
    ]
    return [(await client.get(path, headers=mine)).json() for path in paths]


def test_the_matrix_covers_every_route_with_an_id(app: FastAPI) -> None:
    assert set(id_routes(app)) == set(FOREIGN)


async def test_foreign_objects_are_refused_and_nothing_changes(
    app: FastAPI, client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    world = await _world(client, uow, settings)
    ids, alice = world["ids"], world["alice"]
    before = await _snapshot(client, settings, alice, ids)
    for operation in id_routes(app):
        method, template = operation.split(" ")
        path = _ID.sub(lambda m: str(ids[m.group(1)]), template)
        if operation == "GET /api/v1/posts/{post_id}":  # a draft: invisible to others
            path = f"{API}/posts/{ids['draft_id']}"
        response = await client.request(
            method, path, json=BODIES.get(operation), headers=auth(settings, world["mallory"])
        )
        expected = FOREIGN[operation]
        if expected == "public":
            assert response.status_code == 200, (operation, response.text)
            assert "email" not in response.text, operation  # the public view only
            assert 'is_published":false' not in response.text.replace(" ", ""), operation
        else:
            assert (response.status_code, operation) == (expected, operation), response.text
            assert set(response.json()) == {"error", "detail"}
    assert await _snapshot(client, settings, alice, ids) == before


@pytest.mark.parametrize(
    ("method", "template", "body"),
    [
        ("PATCH", "/users/{user_id}", {"is_superuser": True}),
        ("PATCH", "/users/{user_id}", {"status": "suspended"}),
        ("PATCH", "/users/{user_id}", {"credits": "1000000.00"}),
        ("PATCH", "/users/{user_id}", {"id": 1}),
        ("PATCH", "/users/{user_id}", {"hashed_password": "x"}),
        ("PUT", "/users/{user_id}/profile", {"user_id": 1}),
        ("PATCH", "/products/{product_id}", {"seller_id": 1}),
        ("PATCH", "/products/{product_id}", {"version": 99}),
        ("PATCH", "/posts/{post_id}", {"author_id": 1}),
        ("PATCH", "/posts/{post_id}", {"version": 99}),
        ("POST", "/products", {"seller_id": 1}),
        ("POST", "/posts", {"author_id": 1}),
        ("POST", "/credits/transfers", {"from_user_id": 1}),
        ("POST", "/users", {"is_superuser": True}),
    ],
)
async def test_privileged_fields_are_422_and_nothing_changes(
    client: AsyncClient,
    uow: UnitOfWork,
    settings: Settings,
    method: str,
    template: str,
    body: dict[str, Any],
) -> None:
    world = await _world(client, uow, settings)
    ids, alice = world["ids"], world["alice"]
    valid = {
        "/products": {"name": "x", "category": "tools", "price": "1.00"},
        "/posts": {"title": "hello"},
        "/credits/transfers": {"to_user_id": world["mallory"].id, "amount": "1.00"},
        "/users": {"email": "new@example.com", "username": "newbie", "password": PASSWORD},
        "/users/{user_id}": {"full_name": "Changed"},
    }.get(template, {})
    before = await _snapshot(client, settings, alice, ids)
    path = API + _ID.sub(lambda m: str(ids[m.group(1)]), template)
    response = await client.request(
        method, path, json={**valid, **body}, headers=auth(settings, alice)
    )
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "detail"}
    assert await _snapshot(client, settings, alice, ids) == before


@pytest.mark.parametrize("bad", ["0", "-1", str(2**63), "1e3", "abc", "%00", "1%00"])
async def test_out_of_range_ids_and_nul_bytes_are_422_everywhere(
    app: FastAPI, client: AsyncClient, uow: UnitOfWork, settings: Settings, bad: str
) -> None:
    me = auth(settings, await make_user(uow))
    for operation in id_routes(app):
        method, template = operation.split(" ")
        path = _ID.sub(bad, template)
        response = await client.request(method, path, json=BODIES.get(operation), headers=me)
        assert response.status_code == 422, (operation, bad, response.text)
        assert response.json()["error"] == "ValidationError"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "101"},
        {"limit": str(2**63)},
        {"offset": "-1"},
        {"offset": "10001"},
        {"offset": str(2**63)},
        {"limit": "x"},
        {"q": "a\x00b"},
    ],
)
async def test_limit_offset_and_nul_bounds_on_every_list(
    app: FastAPI, client: AsyncClient, uow: UnitOfWork, settings: Settings, params: dict[str, str]
) -> None:
    me = auth(settings, await make_user(uow))
    lists = list_routes(app)
    assert len(lists) >= 6  # users, products, orders, transfers, tags, posts, a user's posts
    spec = app.openapi()["paths"]
    for path in lists:
        accepted = {p["name"] for p in spec[path]["get"]["parameters"]}
        if not set(params) <= accepted:
            continue
        response = await client.get(path.replace("{user_id}", "1"), params=params, headers=me)
        assert 400 <= response.status_code < 500, (path, params, response.text)
        assert response.status_code in (400, 422), (path, params, response.text)
        assert set(response.json()) == {"error", "detail"}
        # The largest page is fine.
        ok = await client.get(path, params={"limit": "100", "offset": "10000"}, headers=me)
        assert ok.status_code == 200, (path, ok.text)


async def test_oversized_bodies_are_413_declared_or_streamed(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    me = auth(settings, await make_user(uow))
    big = {"title": "x", "content": "y" * CAP}
    declared = await client.post(f"{API}/posts", json=big, headers=me)
    assert declared.status_code == 413
    assert declared.json()["error"] == "PayloadTooLarge"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"title": "x", "content": "'
        for _ in range(CAP // 1024 + 1):
            yield b"y" * 1024
        yield b'"}'

    streamed = await client.post(
        f"{API}/posts", content=chunks(), headers=me | {"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["error"] == "PayloadTooLarge"
    fits = await client.post(f"{API}/posts", json={"title": "x", "content": "y" * 1000}, headers=me)
    assert fits.status_code == 201, fits.text
    listed = await client.get(f"{API}/users/{fits.json()['author_id']}/posts")
    assert listed.json()["total"] == 1  # the refused posts were never written


async def test_login_time_for_an_unknown_user_is_within_20_percent_of_a_wrong_password(
    database_url: str, database: Database, uow: UnitOfWork
) -> None:
    # Real Argon2 work (not the tests' cheap parameters), so the password check dominates
    # as it does in production; interleaved, medians of many attempts.
    settings = Settings(
        database_url=database_url,
        env="test",
        password_hash_memory_kib=16 * 1024,
        password_hash_time_cost=1,
        login_limit_per_account="100000/minute",
        login_limit_per_address="100000/minute",
    )
    app = create_app(settings, database=database)
    members = app.state.members
    user = User(
        email="timing@example.com",
        username="timing",
        full_name="Timing",
        hashed_password=await members.passwords.hash(PASSWORD),
    )
    uow.session.add(user)
    await uow.commit()
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        ratios = [await _timing_round(http) for _ in range(3)]
    print(f"\nlogin timing, unknown user / wrong password (median of pairs): {ratios}")
    # Robust against a noisy shared machine: one clean round of three suffices. A real leak
    # (no Argon2 work for an unknown user) gives about 0.1 in every round.
    assert any(0.8 <= ratio <= 1.2 for ratio in ratios), ratios


async def _timing_round(http: AsyncClient, pairs: int = 30) -> float:
    forms = {
        "unknown": {"username": "nobody-here", "password": "wrong password"},
        "wrong": {"username": "timing", "password": "wrong password"},
    }

    async def attempt(kind: str) -> float:
        started = time.perf_counter()
        response = await http.post(f"{API}/auth/token", data=forms[kind])
        elapsed = time.perf_counter() - started
        assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")
        return elapsed

    for kind in forms:  # warm up both paths
        await attempt(kind)
    ratios = []
    for i in range(pairs):  # interleaved, alternating which goes first
        if i % 2:
            wrong = await attempt("wrong")
            unknown = await attempt("unknown")
        else:
            unknown = await attempt("unknown")
            wrong = await attempt("wrong")
        ratios.append(unknown / wrong)
    return round(statistics.median(ratios), 3)
