"""Hostile input: NUL characters, out-of-range ids and numbers are 4xx, never 500.

PostgreSQL refuses a NUL in text and an integer beyond its column's range with a driver
error; validation must stop them first.
"""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from agora.config import Settings
from agora.db.uow import UnitOfWork
from tests.members.builders import PASSWORD, auth, make_user

USERS = "/api/v1/users"
NUL = "a\x00b"


@pytest.mark.parametrize("field", ["email", "username", "password", "full_name"])
async def test_nul_in_sign_up_is_422(client: AsyncClient, field: str) -> None:
    body = {
        "email": "nul@example.com",
        "username": "nul_user",
        "password": PASSWORD,
        field: NUL * 5,
    }
    response = await client.post(USERS, json=body)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "body",
    [
        {"full_name": NUL},
        {"email": f"x{NUL}@example.com"},
        {"username": NUL},
        {"password": NUL * 5, "current_password": PASSWORD},
        {"password": "new password", "current_password": NUL},
    ],
)
async def test_nul_in_updates_is_422(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, body: dict[str, str]
) -> None:
    user = await make_user(uow)
    response = await client.patch(f"{USERS}/{user.id}", headers=auth(settings, user), json=body)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("field", ["bio", "avatar_url", "location"])
async def test_nul_in_profiles_is_422(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, field: str
) -> None:
    user = await make_user(uow)
    response = await client.put(
        f"{USERS}/{user.id}/profile", headers=auth(settings, user), json={field: NUL}
    )
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "user_id", ["0", "-1", str(2**31), str(2**63), "99999999999999999999999", "abc", "1.5"]
)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE", "GET profile", "PUT profile"])
async def test_out_of_range_ids_are_422(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, user_id: str, method: str
) -> None:
    admin = await make_user(uow, is_superuser=True)
    verb, _, suffix = method.partition(" ")
    url = f"{USERS}/{user_id}" + ("/profile" if suffix else "")
    body = {"bio": "x"} if suffix else ({"full_name": "x"} if verb == "PATCH" else None)
    response = await client.request(verb, url, headers=auth(settings, admin), json=body)
    assert response.status_code == 422, response.text


async def test_the_largest_id_is_a_plain_404(client: AsyncClient) -> None:
    assert (await client.get(f"{USERS}/{2**31 - 1}")).status_code == 404


@pytest.mark.parametrize("credits", ["99999999999999999999.00", "1e400", 10**30, "NaN", "Infinity"])
async def test_huge_amounts_are_422(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, credits: object
) -> None:
    admin = await make_user(uow, is_superuser=True)
    response = await client.patch(
        f"{USERS}/{admin.id}", headers=auth(settings, admin), json={"credits": credits}
    )
    assert response.status_code == 422, response.text


async def test_the_largest_amount_is_stored(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    admin = await make_user(uow, is_superuser=True)
    response = await client.patch(
        f"{USERS}/{admin.id}", headers=auth(settings, admin), json={"credits": "9999999999999.99"}
    )
    assert response.status_code == 200
    assert response.json()["credits"] == "9999999999999.99"


async def test_non_json_and_wrongly_typed_bodies_are_422(client: AsyncClient) -> None:
    assert (
        await client.post(USERS, content=b"\xff\xfe", headers={"content-type": "application/json"})
    ).status_code == 422
    assert (await client.post(USERS, json=["a"])).status_code == 422
    assert (
        await client.post(USERS, json={"email": 1, "username": [], "password": {}})
    ).status_code == 422
