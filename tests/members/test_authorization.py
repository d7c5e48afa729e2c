"""Object-level authorization: who may see, change and delete whom."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import select

from agora.config import Settings
from agora.db.uow import UnitOfWork
from agora.models.user import User
from tests.members.builders import auth, make_user

USERS = "/api/v1/users"
PRIVATE_ONLY = {"email", "status", "credits", "is_superuser"}

Request = Callable[[AsyncClient, int, dict[str, str]], Awaitable[Response]]
WRITES: dict[str, Request] = {
    "patch": lambda c, uid, h: c.patch(f"{USERS}/{uid}", headers=h, json={"full_name": "Hacked"}),
    "delete": lambda c, uid, h: c.delete(f"{USERS}/{uid}", headers=h),
    "put profile": lambda c, uid, h: c.put(
        f"{USERS}/{uid}/profile", headers=h, json={"bio": "Hacked"}
    ),
}


async def _snapshot(uow: UnitOfWork, user_id: int) -> tuple[object, ...]:
    uow.session.expire_all()
    row = (
        await uow.session.execute(
            select(
                User.full_name, User.deleted_at, User.status, User.credits, User.is_superuser
            ).where(User.id == user_id)
        )
    ).one()
    return tuple(row)


async def test_b_cannot_see_as_private_view(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    a = await make_user(uow, credits=500)
    b = await make_user(uow)
    for headers in ({}, auth(settings, b)):
        body = (await client.get(f"{USERS}/{a.id}", headers=headers)).json()
        assert not PRIVATE_ONLY & body.keys()
        listed = (await client.get(USERS, headers=headers)).json()["items"]
        assert all(not PRIVATE_ONLY & item.keys() for item in listed)


@pytest.mark.parametrize("action", list(WRITES))
async def test_b_cannot_change_a(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, action: str
) -> None:
    a_id = (await make_user(uow)).id
    b_headers = auth(settings, await make_user(uow))
    before = await _snapshot(uow, a_id)
    response = await WRITES[action](client, a_id, b_headers)
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "NotAllowed"
    assert await _snapshot(uow, a_id) == before
    assert (await client.get(f"{USERS}/{a_id}/profile")).json()["bio"] is None


@pytest.mark.parametrize("action", list(WRITES))
async def test_anonymous_cannot_change_anyone(
    client: AsyncClient, uow: UnitOfWork, action: str
) -> None:
    a = await make_user(uow)
    response = await WRITES[action](client, a.id, {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("action", list(WRITES))
async def test_a_superuser_may_change_anyone(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, action: str
) -> None:
    a = await make_user(uow)
    admin = await make_user(uow, is_superuser=True)
    response = await WRITES[action](client, a.id, auth(settings, admin))
    assert response.status_code in (200, 204), response.text


@pytest.mark.parametrize(
    "field",
    [
        {"status": "suspended"},
        {"is_superuser": True},
        {"credits": "1000000.00"},
        {"status": "active"},
    ],
)
async def test_non_superusers_cannot_set_privileged_fields_even_on_themselves(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, field: dict[str, object]
) -> None:
    me_id = (await make_user(uow)).id
    before = await _snapshot(uow, me_id)
    response = await client.patch(
        f"{USERS}/{me_id}", headers=auth(settings, me_id), json={"full_name": "Changed", **field}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "PrivilegedField"
    assert await _snapshot(uow, me_id) == before  # nothing changed, not even full_name
