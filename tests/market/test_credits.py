"""The credits API: transfers (with optional idempotency), history, grants."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from agora.config import Settings
from agora.db.uow import UnitOfWork
from tests.market.builders import balance, ledger_count
from tests.members.builders import auth, make_user

TRANSFERS = "/api/v1/credits/transfers"
GRANTS = "/api/v1/credits/grants"


async def test_transfer(client: AsyncClient, uow: UnitOfWork, settings: Settings) -> None:
    ann, bob = await make_user(uow, credits=10_00), await make_user(uow)
    body = {"to_user_id": bob.id, "amount": "2.5", "note": "lunch"}
    response = await client.post(TRANSFERS, json=body, headers=auth(settings, ann))
    assert response.status_code == 201, response.text
    row = response.json()
    assert (row["kind"], row["from_user_id"], row["to_user_id"], row["amount"], row["note"]) == (
        "transfer",
        ann.id,
        bob.id,
        "2.50",
        "lunch",
    )
    assert (await balance(uow, ann), await balance(uow, bob)) == (7_50, 2_50)
    me = (await client.get("/api/v1/users/me", headers=auth(settings, ann))).json()
    assert me["credits"] == "7.50"


async def test_insufficient_credits_change_nothing(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    ann, bob = await make_user(uow, credits=1_00), await make_user(uow)
    body = {"to_user_id": bob.id, "amount": "1.01"}
    response = await client.post(TRANSFERS, json=body, headers=auth(settings, ann))
    assert (response.status_code, response.json()["error"]) == (409, "InsufficientCredits")
    assert (await balance(uow, ann), await balance(uow, bob), await ledger_count(uow)) == (
        1_00,
        0,
        0,
    )
    exact = await client.post(TRANSFERS, json=body | {"amount": "1"}, headers=auth(settings, ann))
    assert exact.status_code == 201
    assert await balance(uow, ann) == 0


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "0"},
        {"amount": "0.00"},
        {"amount": "-1.00"},
        {"amount": "1.001"},
        {"amount": "abc"},
        {"amount": "NaN"},
        {"amount": "1e2"},
        {"amount": 0.1},
        {"amount": None},
        {"note": "n" * 501},
        {"note": "\x00"},
        {"to_user_id": 0},
        {"to_user_id": 2**31},
        {"from_user_id": 1},
    ],
)
async def test_bad_transfers_are_422(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, change: dict[str, Any]
) -> None:
    ann, bob = await make_user(uow, credits=10_00), await make_user(uow)
    body = {"to_user_id": bob.id, "amount": "1.00"} | change
    response = await client.post(TRANSFERS, json=body, headers=auth(settings, ann))
    assert response.status_code == 422, response.text


async def test_refused_recipients(client: AsyncClient, uow: UnitOfWork, settings: Settings) -> None:
    ann = await make_user(uow, credits=10_00)
    to_self = await client.post(
        TRANSFERS, json={"to_user_id": ann.id, "amount": "1"}, headers=auth(settings, ann)
    )
    assert (to_self.status_code, to_self.json()["error"]) == (422, "TransferToSelf")
    nobody = await client.post(
        TRANSFERS, json={"to_user_id": 999_999, "amount": "1"}, headers=auth(settings, ann)
    )
    assert (nobody.status_code, nobody.json()["error"]) == (404, "RecipientNotFound")
    assert (await client.post(TRANSFERS, json={"to_user_id": 1, "amount": "1"})).status_code == 401
    assert await balance(uow, ann) == 10_00


async def test_transfer_idempotency_key(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    ann, bob = await make_user(uow, credits=10_00), await make_user(uow)
    headers = auth(settings, ann) | {"Idempotency-Key": "transfer-0001"}
    body = {"to_user_id": bob.id, "amount": "3.00"}
    first = await client.post(TRANSFERS, json=body, headers=headers)
    again = await client.post(TRANSFERS, json=body, headers=headers)
    assert (first.status_code, again.status_code, again.content) == (201, 201, first.content)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await balance(uow, ann) == 7_00
    other = await client.post(TRANSFERS, json=body | {"amount": "4.00"}, headers=headers)
    assert (other.status_code, other.json()["error"]) == (422, "IdempotencyKeyReused")
    short = await client.post(TRANSFERS, json=body, headers=headers | {"Idempotency-Key": "x"})
    assert (short.status_code, short.json()["error"]) == (400, "InvalidIdempotencyKey")


async def test_history_is_own_and_paginated(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    ann, bob = await make_user(uow, credits=10_00), await make_user(uow, credits=10_00)
    carl = await make_user(uow, credits=10_00)
    for sender, receiver, amount in [(ann, bob, "1"), (bob, ann, "2"), (bob, carl, "3")]:
        response = await client.post(
            TRANSFERS,
            json={"to_user_id": receiver.id, "amount": amount},
            headers=auth(settings, sender),
        )
        assert response.status_code == 201
    page = (await client.get(TRANSFERS, params={"limit": 1}, headers=auth(settings, ann))).json()
    assert [r["amount"] for r in page["items"]] == ["2.00"]
    rest = await client.get(
        TRANSFERS, params={"limit": 1, "cursor": page["next_cursor"]}, headers=auth(settings, ann)
    )
    assert [r["amount"] for r in rest.json()["items"]] == ["1.00"]
    assert rest.json()["next_cursor"] is None
    assert (await client.get(TRANSFERS)).status_code == 401
    bad = await client.get(TRANSFERS, params={"cursor": "nope"}, headers=auth(settings, ann))
    assert bad.status_code == 400


async def test_grants(client: AsyncClient, uow: UnitOfWork, settings: Settings) -> None:
    admin, ann = await make_user(uow, is_superuser=True), await make_user(uow)
    body = {"to_user_id": ann.id, "amount": "100.00", "note": "welcome"}
    response = await client.post(GRANTS, json=body, headers=auth(settings, admin))
    assert response.status_code == 201, response.text
    assert (response.json()["kind"], response.json()["from_user_id"]) == ("grant", None)
    assert await balance(uow, ann) == 100_00
    refused = await client.post(GRANTS, json=body, headers=auth(settings, ann))
    assert (refused.status_code, refused.json()["error"]) == (403, "GrantNotAllowed")
    nobody = await client.post(
        GRANTS, json=body | {"to_user_id": 999_999}, headers=auth(settings, admin)
    )
    assert nobody.status_code == 404
    huge = await client.post(
        GRANTS, json=body | {"amount": "9999999999999.99"}, headers=auth(settings, admin)
    )
    assert huge.status_code == 201
    assert await balance(uow, ann) == 100_00 + 999_999_999_999_999
    history = (await client.get(TRANSFERS, headers=auth(settings, ann))).json()
    assert [r["kind"] for r in history["items"]] == ["grant", "grant"]


async def test_grant_idempotency_key(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    admin = await make_user(uow, is_superuser=True)
    other_admin = await make_user(uow, is_superuser=True)
    ann = await make_user(uow)
    headers = auth(settings, admin) | {"Idempotency-Key": "grant-0001"}
    body = {"to_user_id": ann.id, "amount": "50.00"}
    first = await client.post(GRANTS, json=body, headers=headers)
    again = await client.post(GRANTS, json=body, headers=headers)
    assert (first.status_code, again.status_code, again.content) == (201, 201, first.content)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await balance(uow, ann) == 50_00  # minted once
    other = await client.post(GRANTS, json=body | {"amount": "60.00"}, headers=headers)
    assert (other.status_code, other.json()["error"]) == (422, "IdempotencyKeyReused")
    short = await client.post(GRANTS, json=body, headers=headers | {"Idempotency-Key": "x"})
    assert (short.status_code, short.json()["error"]) == (400, "InvalidIdempotencyKey")
    assert await balance(uow, ann) == 50_00
    # Keys belong to the superuser who sent them: another one's same key is a new grant.
    theirs = auth(settings, other_admin) | {"Idempotency-Key": "grant-0001"}
    assert (await client.post(GRANTS, json=body, headers=theirs)).status_code == 201
    assert await balance(uow, ann) == 100_00
