"""The orders API: idempotent placement, stock, price snapshots, visibility, pay, cancel."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select

from agora.config import Settings
from agora.db.uow import UnitOfWork
from agora.models.market import Order, Product
from agora.models.user import User
from tests.market.builders import balance, ledger_count, make_product, stock
from tests.members.builders import auth, make_user

ORDERS = "/api/v1/orders"


async def _order(
    client: AsyncClient,
    settings: Settings,
    buyer: User,
    lines: list[tuple[Product | int, int]],
    *,
    key: str | None = "key-00000001",
) -> Response:
    headers = auth(settings, buyer) | ({"Idempotency-Key": key} if key is not None else {})
    items = [{"product_id": p if isinstance(p, int) else p.id, "quantity": q} for p, q in lines]
    return await client.post(ORDERS, json={"items": items}, headers=headers)


async def _orders(uow: UnitOfWork) -> int:
    return int((await uow.session.execute(select(func.count(Order.id)))).scalar_one())


async def test_place_order(client: AsyncClient, uow: UnitOfWork, settings: Settings) -> None:
    ann, bob, buyer = await make_user(uow), await make_user(uow), await make_user(uow)
    anvil = await make_product(uow, seller=ann, price=1250, stock=5)
    rope = await make_product(uow, seller=bob, price=99, stock=2)
    response = await _order(client, settings, buyer, [(rope, 2), (anvil, 3)])
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["status"], body["total"], body["buyer_id"]) == ("pending", "39.48", buyer.id)
    assert [(i["product_id"], i["unit_price"], i["line_total"]) for i in body["items"]] == [
        (anvil.id, "12.50", "37.50"),
        (rope.id, "0.99", "1.98"),
    ]
    assert "Idempotent-Replayed" not in response.headers
    assert (await stock(uow, anvil), await stock(uow, rope)) == (2, 0)


async def test_a_retry_replays_the_first_response(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    buyer = await make_user(uow)
    product = await make_product(uow, seller=await make_user(uow), stock=5)
    first = await _order(client, settings, buyer, [(product, 1)])
    await client.patch(  # the price changes: the replay still shows the first response
        f"/api/v1/products/{product.id}",
        json={"price": "99.00"},
        headers=auth(settings, product.seller_id),
    )
    again = await _order(client, settings, buyer, [(product, 1)])
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await stock(uow, product), await _orders(uow)) == (4, 1)
    other = await _order(client, settings, buyer, [(product, 2)])
    assert (other.status_code, other.json()["error"]) == (422, "IdempotencyKeyReused")
    # Keys are per user: another buyer may use the same one.
    someone = await make_user(uow)
    assert (await _order(client, settings, someone, [(product, 1)])).status_code == 201


@pytest.mark.parametrize("key", [None, "short", "x" * 256, "has space inside", "tab\there"])
async def test_the_idempotency_key_is_required_and_checked(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, key: str | None
) -> None:
    buyer = await make_user(uow)
    product = await make_product(uow, seller=await make_user(uow))
    response = await _order(client, settings, buyer, [(product, 1)], key=key)
    assert response.status_code == 400
    expected = "MissingIdempotencyKey" if key is None else "InvalidIdempotencyKey"
    assert response.json()["error"] == expected


async def test_out_of_stock_names_products_and_changes_nothing(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    buyer, seller = await make_user(uow), await make_user(uow)
    plenty = await make_product(uow, seller=seller, stock=10)
    scarce = await make_product(uow, seller=seller, stock=1)
    response = await _order(client, settings, buyer, [(plenty, 2), (scarce, 3)])
    assert (response.status_code, response.json()["error"]) == (409, "OutOfStock")
    assert response.json()["detail"]["products"] == [
        {"product_id": scarce.id, "requested": 3, "available": 1}
    ]
    assert (await stock(uow, plenty), await stock(uow, scarce), await _orders(uow)) == (10, 1, 0)
    # The failed request did not claim the key: with enough stock the same key works.
    response = await _order(client, settings, buyer, [(plenty, 2), (scarce, 1)])
    assert response.status_code == 201


async def test_unavailable_and_own_products(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    buyer, seller = await make_user(uow), await make_user(uow)
    inactive = await make_product(uow, seller=seller, is_active=False)
    own = await make_product(uow, seller=buyer)
    for lines in ([(inactive, 1)], [(999_999, 1)]):
        response = await _order(client, settings, buyer, lines)  # type: ignore[arg-type]
        assert (response.status_code, response.json()["error"]) == (409, "ProductUnavailable")
    response = await _order(client, settings, buyer, [(own, 1)])
    assert (response.status_code, response.json()["error"]) == (422, "OwnProduct")


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": [{"product_id": 1, "quantity": 0}]},
        {"items": [{"product_id": 1, "quantity": 1001}]},
        {"items": [{"product_id": 1, "quantity": 1}, {"product_id": 1, "quantity": 2}]},
        {"items": [{"product_id": n, "quantity": 1} for n in range(1, 52)]},
        {"items": [{"product_id": 2**31, "quantity": 1}]},
        {"items": [{"product_id": 1, "quantity": 1, "price": "0.01"}]},
        {"items": [{"product_id": 1, "quantity": 1}], "total": "0.01"},
        {},
    ],
)
async def test_bad_order_bodies(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, body: dict[str, Any]
) -> None:
    buyer = await make_user(uow)
    headers = auth(settings, buyer) | {"Idempotency-Key": "key-00000001"}
    response = await client.post(ORDERS, json=body, headers=headers)
    assert response.status_code == 422, response.text


async def test_visibility(client: AsyncClient, uow: UnitOfWork, settings: Settings) -> None:
    ann, bob = await make_user(uow), await make_user(uow)
    admin = await make_user(uow, is_superuser=True)
    product = await make_product(uow, seller=await make_user(uow), stock=10)
    mine = (await _order(client, settings, ann, [(product, 1)])).json()
    theirs = (await _order(client, settings, bob, [(product, 1)])).json()
    listed = (await client.get(ORDERS, headers=auth(settings, ann))).json()
    assert [o["id"] for o in listed["items"]] == [mine["id"]]
    everyone = (await client.get(ORDERS, headers=auth(settings, admin))).json()
    assert [o["id"] for o in everyone["items"]] == [theirs["id"], mine["id"]]
    assert (await client.get(f"{ORDERS}/{mine['id']}", headers=auth(settings, ann))).json() == mine
    foreign = await client.get(f"{ORDERS}/{theirs['id']}", headers=auth(settings, ann))
    assert (foreign.status_code, foreign.json()["error"]) == (404, "OrderNotFound")
    seen = await client.get(f"{ORDERS}/{theirs['id']}", headers=auth(settings, admin))
    assert seen.status_code == 200
    assert (await client.get(f"{ORDERS}/999999", headers=auth(settings, ann))).status_code == 404
    assert (await client.get(ORDERS)).status_code == 401
    assert (await client.get(f"{ORDERS}/0", headers=auth(settings, ann))).status_code == 422


async def test_pay_moves_credits_atomically(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    ann, bob = await make_user(uow), await make_user(uow)
    buyer = await make_user(uow, credits=50_00)
    first = await make_product(uow, seller=ann, price=10_00)
    second = await make_product(uow, seller=bob, price=15_00)
    order = (await _order(client, settings, buyer, [(first, 2), (second, 1)])).json()
    assert order["total"] == "35.00"
    response = await client.post(f"{ORDERS}/{order['id']}/pay", headers=auth(settings, buyer))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "paid"
    assert response.json()["paid_at"]
    assert [await balance(uow, u) for u in (buyer, ann, bob)] == [15_00, 20_00, 15_00]
    assert await ledger_count(uow) == 2
    again = await client.post(f"{ORDERS}/{order['id']}/pay", headers=auth(settings, buyer))
    assert (again.status_code, again.json()["error"]) == (409, "OrderNotPending")


async def test_pay_without_enough_credits_changes_nothing(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    seller, buyer = await make_user(uow), await make_user(uow, credits=5_00)
    product = await make_product(uow, seller=seller, price=10_00)
    order = (await _order(client, settings, buyer, [(product, 1)])).json()
    response = await client.post(f"{ORDERS}/{order['id']}/pay", headers=auth(settings, buyer))
    assert (response.status_code, response.json()["error"]) == (409, "InsufficientCredits")
    assert (await balance(uow, buyer), await balance(uow, seller)) == (5_00, 0)
    assert await ledger_count(uow) == 0
    read = await client.get(f"{ORDERS}/{order['id']}", headers=auth(settings, buyer))
    assert read.json()["status"] == "pending"


async def test_only_the_buyer_pays(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    buyer, other = await make_user(uow, credits=100_00), await make_user(uow, credits=100_00)
    admin = await make_user(uow, is_superuser=True, credits=100_00)
    product = await make_product(uow, seller=await make_user(uow))
    order = (await _order(client, settings, buyer, [(product, 1)])).json()
    url = f"{ORDERS}/{order['id']}/pay"
    assert (await client.post(url, headers=auth(settings, other))).status_code == 404
    refused = await client.post(url, headers=auth(settings, admin))
    assert (refused.status_code, refused.json()["error"]) == (403, "NotOrderBuyer")
    assert (
        await client.post(f"{ORDERS}/999999/pay", headers=auth(settings, buyer))
    ).status_code == 404


async def test_cancel_pending_restores_stock(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    buyer, other = await make_user(uow), await make_user(uow)
    product = await make_product(uow, seller=await make_user(uow), stock=4)
    order = (await _order(client, settings, buyer, [(product, 3)])).json()
    url = f"{ORDERS}/{order['id']}/cancel"
    assert (await client.post(url, headers=auth(settings, other))).status_code == 404
    response = await client.post(url, headers=auth(settings, buyer))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"]
    assert await stock(uow, product) == 4
    again = await client.post(url, headers=auth(settings, buyer))
    assert (again.status_code, again.json()["error"]) == (409, "OrderNotPending")
    pay = await client.post(f"{ORDERS}/{order['id']}/pay", headers=auth(settings, buyer))
    assert pay.status_code == 409


async def test_cancel_paid_refunds_and_restores_stock(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    seller, buyer = await make_user(uow), await make_user(uow, credits=30_00)
    product = await make_product(uow, seller=seller, price=10_00, stock=5)
    order = (await _order(client, settings, buyer, [(product, 2)])).json()
    await client.post(f"{ORDERS}/{order['id']}/pay", headers=auth(settings, buyer))
    assert (await balance(uow, buyer), await balance(uow, seller)) == (10_00, 20_00)
    # The product is deleted meanwhile: its stock still comes back.
    await client.delete(f"/api/v1/products/{product.id}", headers=auth(settings, seller))
    response = await client.post(f"{ORDERS}/{order['id']}/cancel", headers=auth(settings, buyer))
    assert response.status_code == 200, response.text
    assert (await balance(uow, buyer), await balance(uow, seller)) == (30_00, 0)
    assert await stock(uow, product) == 5
    assert await ledger_count(uow) == 2  # payment and refund


async def test_cancel_paid_when_the_seller_spent_it_changes_nothing(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    seller, buyer = await make_user(uow), await make_user(uow, credits=10_00)
    friend = await make_user(uow)
    product = await make_product(uow, seller=seller, price=10_00, stock=5)
    order = (await _order(client, settings, buyer, [(product, 1)])).json()
    await client.post(f"{ORDERS}/{order['id']}/pay", headers=auth(settings, buyer))
    spent = await client.post(
        "/api/v1/credits/transfers",
        json={"to_user_id": friend.id, "amount": "9.00"},
        headers=auth(settings, seller),
    )
    assert spent.status_code == 201
    response = await client.post(f"{ORDERS}/{order['id']}/cancel", headers=auth(settings, buyer))
    assert (response.status_code, response.json()["error"]) == (409, "InsufficientCredits")
    assert (await balance(uow, buyer), await balance(uow, seller)) == (0, 1_00)
    assert await stock(uow, product) == 4
