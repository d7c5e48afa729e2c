"""PATCH /users/{id} `credits`: a superuser sets a balance through the ledger."""

from __future__ import annotations

from httpx import AsyncClient
from sqlalchemy import select

from agora.config import Settings
from agora.db.uow import UnitOfWork
from agora.models.market import CreditTransfer
from agora.models.user import User
from tests.members.builders import auth, make_user

USERS = "/api/v1/users"
TRANSFERS = "/api/v1/credits/transfers"


async def _balances_and_replay(
    uow: UnitOfWork, ids: list[int]
) -> tuple[dict[int, int], dict[int, int]]:
    uow.session.expire_all()
    rows = await uow.session.execute(select(User.id, User.credits).where(User.id.in_(ids)))
    balances: dict[int, int] = dict(rows.all())
    replay = dict.fromkeys(ids, 0)
    ledger = await uow.session.execute(
        select(CreditTransfer.from_user_id, CreditTransfer.to_user_id, CreditTransfer.amount)
    )
    for sender, recipient, amount in ledger:
        if sender in replay:
            replay[sender] -= amount
        if recipient in replay:
            replay[recipient] += amount
    return balances, replay


async def _adjustments(uow: UnitOfWork) -> list[tuple[int | None, int | None, int]]:
    rows = await uow.session.execute(
        select(CreditTransfer.from_user_id, CreditTransfer.to_user_id, CreditTransfer.amount)
        .where(CreditTransfer.kind == "adjustment")
        .order_by(CreditTransfer.id)
    )
    return [(sender, recipient, amount) for sender, recipient, amount in rows]


async def test_setting_credits_up_and_down_is_recorded_and_replays(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    ann, bob = await make_user(uow), await make_user(uow)
    ann_id, bob_id = ann.id, bob.id  # the ORM objects expire below
    admin = await make_user(uow, is_superuser=True)
    as_admin = auth(settings, admin)

    up = await client.patch(f"{USERS}/{ann.id}", headers=as_admin, json={"credits": "50.00"})
    assert up.status_code == 200, up.text
    assert up.json()["credits"] == "50.00"
    sent = await client.post(
        TRANSFERS, headers=auth(settings, ann), json={"to_user_id": bob.id, "amount": "12.50"}
    )
    assert sent.status_code == 201, sent.text
    down = await client.patch(f"{USERS}/{ann.id}", headers=as_admin, json={"credits": "10.00"})
    assert down.status_code == 200, down.text
    assert down.json()["credits"] == "10.00"
    same = await client.patch(f"{USERS}/{ann.id}", headers=as_admin, json={"credits": "10.00"})
    assert same.json()["credits"] == "10.00"
    zero = await client.patch(f"{USERS}/{bob.id}", headers=as_admin, json={"credits": "0"})
    assert zero.json()["credits"] == "0.00"

    # 0 -> 50.00 (credit), 37.50 -> 10.00 (debit), unchanged (no row), 12.50 -> 0 (debit)
    assert await _adjustments(uow) == [
        (None, ann_id, 5000),
        (ann_id, None, 2750),
        (bob_id, None, 1250),
    ]
    balances, replay = await _balances_and_replay(uow, [ann_id, bob_id])
    assert balances == replay == {ann_id: 1000, bob_id: 0}


async def test_an_adjustment_shows_in_the_users_ledger(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    ann = await make_user(uow)
    admin = await make_user(uow, is_superuser=True)
    await client.patch(f"{USERS}/{ann.id}", headers=auth(settings, admin), json={"credits": "3"})
    await client.patch(f"{USERS}/{ann.id}", headers=auth(settings, admin), json={"credits": "1"})
    items = (await client.get(TRANSFERS, headers=auth(settings, ann))).json()["items"]
    assert [(i["kind"], i["from_user_id"], i["to_user_id"], i["amount"]) for i in items] == [
        ("adjustment", ann.id, None, "2.00"),
        ("adjustment", None, ann.id, "3.00"),
    ]


async def test_a_non_superuser_cannot_set_credits_and_nothing_is_recorded(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    me_id = (await make_user(uow)).id
    response = await client.patch(
        f"{USERS}/{me_id}", headers=auth(settings, me_id), json={"credits": "1000.00"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "PrivilegedField"
    uow.session.expire_all()
    assert await uow.session.scalar(select(User.credits).where(User.id == me_id)) == 0
    assert await _adjustments(uow) == []


async def test_a_refused_patch_records_no_adjustment(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    ann, bob = await make_user(uow), await make_user(uow)
    ann_id = ann.id
    admin = await make_user(uow, is_superuser=True)
    response = await client.patch(  # the username is taken: 409, and the balance stays
        f"{USERS}/{ann_id}",
        headers=auth(settings, admin),
        json={"credits": "5.00", "username": bob.username},
    )
    assert response.status_code == 409
    balances, replay = await _balances_and_replay(uow, [ann_id])
    assert balances == replay == {ann_id: 0}
    assert await _adjustments(uow) == []
