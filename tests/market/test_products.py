"""The products API: create, list (filters, sorts, offset and cursor pages), read with an
ETag, update with If-Match, soft delete."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from agora.config import Settings
from agora.db.uow import UnitOfWork
from tests.market.builders import make_product
from tests.members.builders import auth, make_user

PRODUCTS = "/api/v1/products"
VALID = {"name": "Anvil", "category": "tools", "price": "12.50", "stock": 3}


async def test_create_product(client: AsyncClient, uow: UnitOfWork, settings: Settings) -> None:
    seller = await make_user(uow)
    response = await client.post(PRODUCTS, json=VALID, headers=auth(settings, seller))
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["seller_id"], body["price"], body["stock"], body["version"]) == (
        seller.id,
        "12.50",
        3,
        1,
    )
    assert response.headers["ETag"] == '"1"'


async def test_create_needs_a_token(client: AsyncClient) -> None:
    response = await client.post(PRODUCTS, json=VALID)
    assert (response.status_code, response.json()["error"]) == (401, "NotAuthenticated")


@pytest.mark.parametrize(
    "change",
    [
        {"price": "0"},
        {"price": "-1.00"},
        {"price": "1.001"},
        {"price": "1e3"},
        {"price": "100000000.01"},
        {"price": 1.5},
        {"name": ""},
        {"name": "x" * 201},
        {"name": "a\x00b"},
        {"category": "c" * 51},
        {"description": "d" * 10_001},
        {"stock": -1},
        {"stock": 2**40},
        {"seller_id": 1},
        {"id": 5},
    ],
)
async def test_create_rejects_bad_input(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, change: dict[str, Any]
) -> None:
    seller = await make_user(uow)
    response = await client.post(PRODUCTS, json=VALID | change, headers=auth(settings, seller))
    assert response.status_code == 422, response.text


async def test_read_product_with_etag(client: AsyncClient, uow: UnitOfWork) -> None:
    product = await make_product(uow, seller=await make_user(uow), price=999)
    response = await client.get(f"{PRODUCTS}/{product.id}")
    assert response.status_code == 200
    assert response.json()["price"] == "9.99"
    assert response.headers["ETag"] == '"1"'


@pytest.mark.parametrize("product_id", ["999999", "0", str(2**31), "abc"])
async def test_read_missing_product(client: AsyncClient, product_id: str) -> None:
    response = await client.get(f"{PRODUCTS}/{product_id}")
    assert response.status_code in (404, 422)
    if product_id == "999999":
        assert response.json()["error"] == "ProductNotFound"


async def _names(client: AsyncClient, **params: Any) -> list[str]:
    response = await client.get(PRODUCTS, params=params)
    assert response.status_code == 200, response.text
    return [p["name"] for p in response.json()["items"]]


async def test_list_filters_and_sorts(client: AsyncClient, uow: UnitOfWork) -> None:
    ann, bob = await make_user(uow), await make_user(uow)
    await make_product(uow, seller=ann, name="Red Anvil", price=500, stock=0, category="tools")
    await make_product(uow, seller=ann, name="Blue hammer", price=1500, category="tools")
    await make_product(uow, seller=bob, name="50% off rope", price=250, category="outdoor")
    await make_product(uow, seller=bob, name="Hidden", price=100, is_active=False)

    assert await _names(client) == ["50% off rope", "Blue hammer", "Red Anvil"]  # newest
    assert await _names(client, sort="price") == ["50% off rope", "Red Anvil", "Blue hammer"]
    assert await _names(client, sort="-price") == ["Blue hammer", "Red Anvil", "50% off rope"]
    assert await _names(client, category="tools", sort="price") == ["Red Anvil", "Blue hammer"]
    assert await _names(client, seller_id=bob.id) == ["50% off rope"]
    assert await _names(client, min_price="2.50", max_price="5") == ["50% off rope", "Red Anvil"]
    assert await _names(client, in_stock="true", sort="price") == ["50% off rope", "Blue hammer"]
    assert await _names(client, in_stock="false") == ["Red Anvil"]
    assert await _names(client, q="ANVIL") == ["Red Anvil"]
    assert await _names(client, q="50%") == ["50% off rope"]
    assert await _names(client, q="0%") == ["50% off rope"]
    assert await _names(client, q="%") == ["50% off rope"]  # a literal percent sign


async def test_list_offset_and_cursor_pages(client: AsyncClient, uow: UnitOfWork) -> None:
    seller = await make_user(uow)
    for price in (300, 100, 200, 100, 500):
        await make_product(uow, seller=seller, price=price)
    page = (await client.get(PRODUCTS, params={"limit": 2, "offset": 2, "sort": "price"})).json()
    assert (page["total"], page["has_more"], [p["price"] for p in page["items"]]) == (
        5,
        True,
        ["2.00", "3.00"],
    )
    prices: list[str] = []
    params: dict[str, Any] = {"limit": 2, "sort": "price", "paginate": "cursor"}
    while True:
        body = (await client.get(PRODUCTS, params=params)).json()
        prices += [p["price"] for p in body["items"]]
        if body["next_cursor"] is None:
            break
        params = {"limit": 2, "sort": "price", "cursor": body["next_cursor"]}
    assert prices == ["1.00", "1.00", "2.00", "3.00", "5.00"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "garbage"}, 400),
        ({"min_price": "abc"}, 422),
        ({"min_price": "5", "max_price": "1"}, 422),
        ({"limit": 1000}, 422),
        ({"offset": 10**6}, 422),
        ({"q": "x" * 101}, 422),
        ({"q": "a\x00"}, 422),
        ({"sort": "name"}, 422),
        ({"seller_id": 2**31}, 422),
    ],
)
async def test_list_rejects_bad_parameters(
    client: AsyncClient, params: dict[str, Any], status: int
) -> None:
    response = await client.get(PRODUCTS, params=params)
    assert response.status_code == status, response.text


async def test_seller_updates_and_the_version_moves(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    seller = await make_user(uow)
    product = await make_product(uow, seller=seller)
    url, headers = f"{PRODUCTS}/{product.id}", auth(settings, seller)
    response = await client.patch(
        url, json={"price": "7.25", "stock": 1}, headers={**headers, "If-Match": '"1"'}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["price"], response.json()["version"]) == ("7.25", 2)
    assert response.headers["ETag"] == '"2"'
    stale = await client.patch(url, json={"name": "x"}, headers={**headers, "If-Match": '"1"'})
    assert (stale.status_code, stale.json()["error"]) == (412, "VersionMismatch")
    assert (await client.get(url)).json()["name"] == product.name  # nothing changed
    anyway = await client.patch(url, json={"name": "New"}, headers={**headers, "If-Match": "*"})
    assert anyway.status_code == 200
    plain = await client.patch(url, json={"is_active": False}, headers=headers)
    assert (plain.status_code, plain.json()["version"]) == (200, 4)


async def test_update_permissions_and_input(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    seller, other = await make_user(uow), await make_user(uow)
    admin = await make_user(uow, is_superuser=True)
    product = await make_product(uow, seller=seller)
    url = f"{PRODUCTS}/{product.id}"
    refused = await client.patch(url, json={"name": "Mine"}, headers=auth(settings, other))
    assert (refused.status_code, refused.json()["error"]) == (403, "NotProductSeller")
    assert (await client.patch(url, json={"name": "x"})).status_code == 401
    ok = await client.patch(url, json={"name": "Admin"}, headers=auth(settings, admin))
    assert ok.status_code == 200
    for bad in ({"name": None}, {"price": "0"}, {"seller_id": other.id}):
        response = await client.patch(url, json=bad, headers=auth(settings, seller))
        assert response.status_code == 422, bad
    missing = await client.patch(
        f"{PRODUCTS}/999999", json={"name": "x"}, headers=auth(settings, seller)
    )
    assert missing.status_code == 404


async def test_soft_delete(client: AsyncClient, uow: UnitOfWork, settings: Settings) -> None:
    seller, other = await make_user(uow), await make_user(uow)
    product = await make_product(uow, seller=seller)
    url = f"{PRODUCTS}/{product.id}"
    assert (await client.delete(url, headers=auth(settings, other))).status_code == 403
    stale = await client.delete(url, headers={**auth(settings, seller), "If-Match": '"9"'})
    assert stale.status_code == 412
    assert (await client.delete(url, headers=auth(settings, seller))).status_code == 204
    assert (await client.get(url)).status_code == 404
    assert await _names(client) == []
    assert (await client.delete(url, headers=auth(settings, seller))).status_code == 404
