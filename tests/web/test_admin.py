"""`/admin`: superusers only, no password hashes, a read-only ledger."""

from __future__ import annotations

import pytest
from httpx import AsyncClient, Response

from agora.db.base import utcnow
from agora.db.uow import UnitOfWork
from agora.models import CreditTransfer, TransferKind
from agora.models.user import UserStatus
from tests.members.builders import PASSWORD, make_user


async def log_in(client: AsyncClient, login: str, password: str = PASSWORD) -> Response:
    return await client.post("/admin/login", data={"username": login, "password": password})


def logged_in(response: Response) -> bool:
    return response.status_code == 302 and response.headers["location"].endswith("/admin/")


async def test_admin_pages_need_a_login(client: AsyncClient) -> None:
    for path in ("/admin/", "/admin/user/list", "/admin/credit-transfer/list"):
        response = await client.get(path)
        assert response.status_code == 302
        assert response.headers["location"].endswith("/admin/login")


async def test_superuser_logs_in_with_username_or_email(
    client: AsyncClient, uow: UnitOfWork
) -> None:
    boss = await make_user(uow, username="boss", is_superuser=True)
    response = await log_in(client, "boss")
    assert logged_in(response)
    assert "agora_admin" in response.headers["set-cookie"]
    assert "path=/admin" in response.headers["set-cookie"].lower()
    assert (await client.get("/admin/user/list")).status_code == 200

    await client.get("/admin/logout")
    assert (await client.get("/admin/user/list")).status_code == 302
    assert logged_in(await log_in(client, boss.email.upper()))


@pytest.mark.parametrize("case", ["member", "wrong_password", "unknown", "suspended"])
async def test_login_refused(client: AsyncClient, uow: UnitOfWork, case: str) -> None:
    await make_user(uow, username="member")
    await make_user(uow, username="boss", is_superuser=True)
    await make_user(uow, username="frozen", is_superuser=True, status=UserStatus.suspended)
    login, password = {
        "member": ("member", PASSWORD),
        "wrong_password": ("boss", PASSWORD + "x"),
        "unknown": ("nobody", PASSWORD),
        "suspended": ("frozen", PASSWORD),
    }[case]
    response = await log_in(client, login, password)
    assert response.status_code == 400
    assert "agora_admin" not in response.headers.get("set-cookie", "")
    assert (await client.get("/admin/user/list")).status_code == 302


async def test_demoted_superuser_loses_the_admin(client: AsyncClient, uow: UnitOfWork) -> None:
    boss = await make_user(uow, username="boss", is_superuser=True)
    assert logged_in(await log_in(client, "boss"))
    boss.is_superuser = False
    await uow.commit()
    assert (await client.get("/admin/user/list")).status_code == 302


async def test_forged_session_cookie_is_refused(client: AsyncClient, uow: UnitOfWork) -> None:
    await make_user(uow, username="boss", is_superuser=True)
    assert logged_in(await log_in(client, "boss"))
    cookie = client.cookies["agora_admin"]
    client.cookies.clear()
    client.cookies.set("agora_admin", cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB"))
    assert (await client.get("/admin/user/list")).status_code == 302


async def test_user_pages_never_show_the_password_hash(
    client: AsyncClient, uow: UnitOfWork
) -> None:
    boss = await make_user(uow, username="boss", is_superuser=True)
    member = await make_user(uow, username="member", full_name="Ada Member")
    assert logged_in(await log_in(client, "boss"))
    pages = [
        await client.get("/admin/user/list"),
        await client.get("/admin/user/list?search=member"),
        await client.get(f"/admin/user/details/{member.id}"),
        await client.get(f"/admin/user/edit/{member.id}"),
    ]
    for page in pages:
        assert page.status_code == 200, page.url
        assert member.hashed_password not in page.text
        assert boss.hashed_password not in page.text
        assert "$argon2" not in page.text
        assert "hashed_password" not in page.text.lower().replace(" ", "_")
    assert "Ada Member" in pages[1].text
    edit = pages[3].text
    assert 'name="credits"' not in edit  # balances change through the ledger only
    assert 'name="username"' in edit


async def test_edit_form_cannot_change_credits(client: AsyncClient, uow: UnitOfWork) -> None:
    await make_user(uow, username="boss", is_superuser=True)
    member = await make_user(uow, username="member", credits=500)
    assert logged_in(await log_in(client, "boss"))
    response = await client.post(
        f"/admin/user/edit/{member.id}",
        data={
            "email": member.email,
            "username": "member",
            "full_name": "Renamed",
            "status": "active",
            "credits": "999999",
            "hashed_password": "x",
        },
    )
    assert response.status_code == 302
    await uow.session.refresh(member)
    assert (member.full_name, member.credits) == ("Renamed", 500)
    assert member.hashed_password.startswith("$argon2")


async def test_credit_transfers_are_read_only(client: AsyncClient, uow: UnitOfWork) -> None:
    await make_user(uow, username="boss", is_superuser=True)
    member = await make_user(uow, username="member")
    row = CreditTransfer(kind=TransferKind.grant, to_user_id=member.id, amount=250, note="hi")
    uow.session.add(row)
    await uow.commit()
    assert logged_in(await log_in(client, "boss"))

    listing = await client.get("/admin/credit-transfer/list")
    assert listing.status_code == 200
    assert "/admin/credit-transfer/create" not in listing.text
    assert f"/admin/credit-transfer/edit/{row.id}" not in listing.text
    assert (await client.get(f"/admin/credit-transfer/details/{row.id}")).status_code == 200
    assert (await client.get("/admin/credit-transfer/create")).status_code == 403
    assert (await client.get(f"/admin/credit-transfer/edit/{row.id}")).status_code == 403
    edited = await client.post(f"/admin/credit-transfer/edit/{row.id}", data={"amount": "1"})
    assert edited.status_code == 403
    deleted = await client.delete("/admin/credit-transfer/delete", params={"pks": str(row.id)})
    assert deleted.status_code == 403
    await uow.session.refresh(row)
    assert row.amount == 250


async def test_every_view_lists(client: AsyncClient, uow: UnitOfWork) -> None:
    await make_user(uow, username="boss", is_superuser=True)
    assert logged_in(await log_in(client, "boss"))
    for identity in (
        "user",
        "user-profile",
        "post",
        "tag",
        "product",
        "order",
        "order-item",
        "credit-transfer",
    ):
        response = await client.get(f"/admin/{identity}/list?sortBy=id&sort=desc")
        assert response.status_code == 200, identity


async def test_soft_deleted_users_are_not_listed(client: AsyncClient, uow: UnitOfWork) -> None:
    await make_user(uow, username="boss", is_superuser=True)
    gone = await make_user(uow, username="gone_user")
    gone.deleted_at = utcnow()
    await uow.commit()
    assert logged_in(await log_in(client, "boss"))
    listing = await client.get("/admin/user/list")
    assert "gone_user" not in listing.text
    assert (await client.get(f"/admin/user/details/{gone.id}")).status_code == 404
