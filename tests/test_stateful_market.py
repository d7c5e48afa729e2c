"""A Hypothesis state machine over sign-up, login, grants, transfers, products and orders
(issue 10.2), against a pure-Python model, on both databases.

The machine drives the real app in-process (Schemathesis's ASGI client, which runs the
lifespan) on a database of its own, so every request commits as in production. After every
step, the balances, the stock and the orders the API reports must be the model's, and the credits in
circulation must equal the credits granted (nothing created or lost). Idempotent replays of
transfers and orders are steps like any other: same status, same body, nothing applied twice.

Bounded by `AGORA_STATEFUL_EXAMPLES` (default 10 runs of at most 20 steps per backend).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from schemathesis.python import asgi

from agora.app import create_app
from agora.db.engine import make_engine
from agora.db.session import Database
from agora.money import format_cents, parse_cents
from tests.members.builders import PASSWORD, make_user
from tests.members.conftest import fast_settings
from tests.support.databases import TestDatabases, upgrade

EXAMPLES = int(os.environ.get("AGORA_STATEFUL_EXAMPLES", "10"))
API = "/api/v1"
_names = itertools.count(1)
_keys = itertools.count(1)
SEEN: set[str] = set()  # outcomes the machine reached, across runs


@dataclass
class Member:
    id: int
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Model:
    balances: dict[int, int] = field(default_factory=dict)  # user id -> cents
    stock: dict[int, int] = field(default_factory=dict)  # product id -> units
    price: dict[int, int] = field(default_factory=dict)
    seller: dict[int, int] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> status, total, ...
    granted: int = 0


@dataclass
class Replayable:
    """A request that was sent with an Idempotency-Key, and what it answered."""

    path: str
    body: dict[str, Any]
    member: Member
    key: str
    status: int
    content: bytes


@dataclass
class OrderRef:
    id: int
    buyer: Member
    placed: Replayable


class Market(RuleBasedStateMachine):
    http: asgi.ASGIClient
    admin: Member

    members = Bundle("members")
    products = Bundle("products")
    orders = Bundle("orders")
    sent = Bundle("sent")

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.mine: list[int] = []  # this run's members (the database keeps earlier runs')
        self.members_made: list[Member] = []

    @rule(target=members)
    def the_seller(self) -> Any:
        """The seller made at initialization, so it can buy, pay and be paid."""
        return multiple(*self.members_made)

    # --- members ---------------------------------------------------------------

    @initialize(target=members)
    def a_funded_buyer(self) -> Member:
        """Every run starts with a member holding credits and one with stock on sale, so
        short runs still reach orders, payments and cancellations."""
        buyer = self._sign_up()
        self.grant(buyer, 100_00)
        return buyer

    @initialize(target=products)
    def a_seller_with_stock(self) -> int:
        seller = self._sign_up()
        self.grant(seller, 30_00)
        self.members_made.append(seller)
        return self._create_product(seller, 5_00, 5)

    @rule(target=members)
    def sign_up(self) -> Member:
        return self._sign_up()

    def _sign_up(self) -> Member:
        name = f"member{next(_names)}"
        body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD}
        created = self.http.post(f"{API}/users", json=body)
        assert created.status_code == 201, created.text
        token = self.http.post(f"{API}/auth/token", data={"username": name, "password": PASSWORD})
        assert token.status_code == 200, token.text
        member = Member(created.json()["id"], token.json()["access_token"])
        self.model.balances[member.id] = 0
        self.mine.append(member.id)
        return member

    @rule(member=members, cents=st.integers(1, 50_00))
    def grant(self, member: Member, cents: int) -> None:
        body: dict[str, Any] = {"to_user_id": member.id, "amount": format_cents(cents)}
        response = self.http.post(f"{API}/credits/grants", json=body, headers=self.admin.auth)
        assert response.status_code == 201, response.text
        self.model.balances[member.id] += cents
        self.model.granted += cents

    # --- transfers -------------------------------------------------------------

    @rule(
        target=sent,
        sender=members,
        recipient=members,
        cents=st.integers(1, 60_00),
        keyed=st.booleans(),
    )
    def transfer(self, sender: Member, recipient: Member, cents: int, keyed: bool) -> Any:
        body: dict[str, Any] = {"to_user_id": recipient.id, "amount": format_cents(cents)}
        key = f"transfer-{next(_keys):08d}"
        headers = sender.auth | ({"Idempotency-Key": key} if keyed else {})
        response = self.http.post(f"{API}/credits/transfers", json=body, headers=headers)
        balances = self.model.balances
        if sender.id == recipient.id:
            assert response.status_code == 422, response.text
        elif balances[sender.id] < cents:
            assert (response.status_code, response.json()["error"]) == (
                409,
                "InsufficientCredits",
            )
        else:
            assert response.status_code == 201, response.text
            SEEN.add("transfer")
            balances[sender.id] -= cents
            balances[recipient.id] += cents
        if not keyed or response.status_code != 201:  # a refused request is not stored
            return multiple()
        path = f"{API}/credits/transfers"
        return Replayable(path, body, sender, key, response.status_code, response.content)

    def _replay(self, first: Replayable) -> None:
        """The same key and body again: the first answer, and nothing happens twice (the
        invariants check the second half)."""
        headers = first.member.auth | {"Idempotency-Key": first.key}
        again = self.http.post(first.path, json=first.body, headers=headers)
        assert (again.status_code, again.content) == (first.status, first.content)
        assert again.headers.get("Idempotent-Replayed") == "true"
        SEEN.add("replay")

    @rule(first=sent)
    def replay_transfer(self, first: Replayable) -> None:
        self._replay(first)

    # --- products and orders ---------------------------------------------------

    @rule(
        target=products,
        seller=members,
        cents=st.integers(1, 20_00),
        stock=st.integers(0, 5),
    )
    def create_product(self, seller: Member, cents: int, stock: int) -> int:
        return self._create_product(seller, cents, stock)

    def _create_product(self, seller: Member, cents: int, stock: int) -> int:
        body: dict[str, Any] = {
            "name": f"thing {next(_names)}",
            "category": "tools",
            "price": format_cents(cents),
            "stock": stock,
        }
        response = self.http.post(f"{API}/products", json=body, headers=seller.auth)
        assert response.status_code == 201, response.text
        product_id: int = response.json()["id"]
        self.model.stock[product_id] = stock
        self.model.price[product_id] = cents
        self.model.seller[product_id] = seller.id
        return product_id

    @rule(target=orders, buyer=members, product=products, quantity=st.integers(1, 3))
    def place_order(self, buyer: Member, product: int, quantity: int) -> Any:
        key = f"order-{next(_keys):08d}"
        body = {"items": [{"product_id": product, "quantity": quantity}]}
        headers = buyer.auth | {"Idempotency-Key": key}
        response = self.http.post(f"{API}/orders", json=body, headers=headers)
        if self.model.seller[product] == buyer.id:
            assert (response.status_code, response.json()["error"]) == (422, "OwnProduct")
            return multiple()
        if self.model.stock[product] < quantity:
            assert (response.status_code, response.json()["error"]) == (409, "OutOfStock")
            return multiple()
        assert response.status_code == 201, response.text
        SEEN.add("order")
        order = response.json()
        self.model.stock[product] -= quantity
        self.model.orders[order["id"]] = {
            "status": "pending",
            "total": self.model.price[product] * quantity,
            "buyer": buyer.id,
            "seller": self.model.seller[product],
            "product": product,
            "quantity": quantity,
        }
        assert parse_cents(order["total"]) == self.model.orders[order["id"]]["total"]
        first = Replayable(f"{API}/orders", body, buyer, key, 201, response.content)
        return OrderRef(order["id"], buyer, first)

    @rule(order=orders)
    def replay_order(self, order: OrderRef) -> None:
        self._replay(order.placed)  # even after a payment or a cancellation

    @rule(order=orders)
    def pay(self, order: OrderRef) -> None:
        order_id, buyer = order.id, order.buyer
        state = self.model.orders[order_id]
        response = self.http.post(f"{API}/orders/{order_id}/pay", headers=buyer.auth)
        balances = self.model.balances
        if state["status"] != "pending":
            assert (response.status_code, response.json()["error"]) == (409, "OrderNotPending")
        elif balances[buyer.id] < state["total"]:
            assert (response.status_code, response.json()["error"]) == (
                409,
                "InsufficientCredits",
            )
        else:
            assert response.status_code == 200, response.text
            SEEN.add("pay")
            balances[buyer.id] -= state["total"]
            balances[state["seller"]] += state["total"]
            state["status"] = "paid"

    @rule(order=orders)
    def cancel(self, order: OrderRef) -> None:
        order_id, buyer = order.id, order.buyer
        state = self.model.orders[order_id]
        response = self.http.post(f"{API}/orders/{order_id}/cancel", headers=buyer.auth)
        balances = self.model.balances
        if state["status"] == "cancelled":
            assert (response.status_code, response.json()["error"]) == (409, "OrderNotPending")
            return
        if state["status"] == "paid" and balances[state["seller"]] < state["total"]:
            assert (response.status_code, response.json()["error"]) == (
                409,
                "InsufficientCredits",
            )
            return
        assert response.status_code == 200, response.text
        SEEN.add("cancel")
        if state["status"] == "paid":
            balances[state["seller"]] -= state["total"]
            balances[buyer.id] += state["total"]
        self.model.stock[state["product"]] += state["quantity"]
        state["status"] = "cancelled"

    # --- invariants, after every step -------------------------------------------

    @invariant()
    def balances_agree(self) -> None:
        for user_id, cents in self.model.balances.items():
            shown = self.http.get(f"{API}/users/{user_id}", headers=self.admin.auth)
            assert parse_cents(shown.json()["credits"]) == cents, (user_id, shown.text)
        # Nothing minted or lost: this run's members hold exactly what was granted to them.
        assert sum(self.model.balances.values()) == self.model.granted

    @invariant()
    def stock_agrees(self) -> None:
        for product_id, units in self.model.stock.items():
            shown = self.http.get(f"{API}/products/{product_id}")
            assert shown.json()["stock"] == units, (product_id, shown.text)

    @invariant()
    def orders_agree(self) -> None:
        for order_id, state in self.model.orders.items():
            shown = self.http.get(f"{API}/orders/{order_id}", headers=self.admin.auth)
            assert shown.json()["status"] == state["status"], (order_id, shown.text)
            assert parse_cents(shown.json()["total"]) == state["total"]


@pytest.fixture
async def market_url(backend: str, databases: TestDatabases) -> str:
    """A database of its own (the machine commits), with a superuser to grant credits."""
    url = await databases.fresh_url(backend)
    await upgrade(url)
    return url


async def _admin_id(url: str) -> int:
    engine = make_engine(url)
    try:
        async with Database(engine).uow() as uow:
            admin = await make_user(uow, username="admin", is_superuser=True)
            return int(admin.id)
    finally:
        await engine.dispose()


@pytest.fixture
async def admin_id(market_url: str) -> int:
    return await _admin_id(market_url)


@pytest.fixture
def http(market_url: str) -> Iterator[asgi.ASGIClient]:
    app = create_app(
        fast_settings(
            market_url,
            login_limit_per_account="1000000/minute",
            login_limit_per_address="1000000/minute",
        )
    )
    try:
        with asgi.get_client(app) as client:  # type: ignore[arg-type]  # runs the app's lifespan, in-process
            yield client
    finally:
        asgi.shutdown_lifespans()


def test_the_api_agrees_with_the_model(
    http: asgi.ASGIClient, admin_id: int, market_url: str, backend: str
) -> None:
    token = http.post(f"{API}/auth/token", data={"username": "admin", "password": PASSWORD})
    assert token.status_code == 200, token.text
    SEEN.clear()
    Market.http = http
    Market.admin = Member(admin_id, token.json()["access_token"])
    run_state_machine_as_test(
        Market,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=20,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(f"\nstateful {backend}: reached {sorted(SEEN)}")
    # The machine got past sign-up and grants to every kind of outcome.
    assert {"transfer", "order", "pay", "cancel", "replay"} <= SEEN
