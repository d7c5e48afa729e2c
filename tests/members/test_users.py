"""The users API: list, read, me, update, delete, profile."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from agora.config import Settings
from agora.db.base import utcnow
from agora.db.uow import UnitOfWork
from agora.models.user import User, UserStatus
from tests.members.builders import PASSWORD, auth, make_user

USERS = "/api/v1/users"
PUBLIC = {"id", "username", "full_name", "created_at", "profile"}
PRIVATE = PUBLIC | {"email", "status", "credits", "is_superuser"}


# --- GET /users/{id} and /users/me ----------------------------------------------------------


async def test_anyone_sees_the_public_view(client: AsyncClient, uow: UnitOfWork) -> None:
    user = await make_user(uow, username="alice", full_name="Alice A")
    response = await client.get(f"{USERS}/{user.id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == PUBLIC
    assert (body["username"], body["full_name"]) == ("alice", "Alice A")


async def test_self_and_superusers_see_the_private_view(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    user = await make_user(uow, credits=1250)
    admin = await make_user(uow, is_superuser=True)
    for viewer in (user, admin):
        body = (await client.get(f"{USERS}/{user.id}", headers=auth(settings, viewer))).json()
        assert set(body) == PRIVATE
        assert body["credits"] == "12.50"
        assert body["status"] == "active"


async def test_a_token_that_does_not_verify_is_401_even_where_a_token_is_optional(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    user = await make_user(uow)
    signed, signature = auth(settings, user)["Authorization"].rsplit(".", 1)
    forged = f"{signed}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"  # 6 bits changed
    for header in ("Bearer not-a-token", forged):
        response = await client.get(f"{USERS}/{user.id}", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["error"] == "InvalidToken"
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_me_is_the_private_view(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    user = await make_user(uow)
    response = await client.get(f"{USERS}/me", headers=auth(settings, user))
    assert response.status_code == 200
    assert set(response.json()) == PRIVATE
    assert response.json()["id"] == user.id


async def test_absent_or_deleted_users_are_404(client: AsyncClient, uow: UnitOfWork) -> None:
    user = await make_user(uow)
    user.deleted_at = utcnow()
    await uow.commit()
    for user_id in (user.id, 2**31 - 1):
        response = await client.get(f"{USERS}/{user_id}")
        assert response.status_code == 404
        assert response.json()["error"] == "UserNotFound"
        assert (await client.get(f"{USERS}/{user_id}/profile")).status_code == 404


# --- PATCH ----------------------------------------------------------------------------------


async def test_a_user_updates_their_own_fields(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    user = await make_user(uow, username="alice", full_name="Alice")
    response = await client.patch(
        f"{USERS}/{user.id}",
        headers=auth(settings, user),
        json={"full_name": "Alice B", "email": "NEW@example.com", "username": "alice_b"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["full_name"], body["email"], body["username"]) == (
        "Alice B",
        "new@example.com",
        "alice_b",
    )
    # Partial: what was not sent is unchanged.
    response = await client.patch(
        f"{USERS}/{user.id}", headers=auth(settings, user), json={"full_name": "Alice C"}
    )
    assert response.json()["username"] == "alice_b"


async def test_patch_to_a_taken_email_or_username_is_409(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    user = await make_user(uow, username="alice")
    await make_user(uow, username="bob")
    for change, error in (
        ({"email": "bob@example.com"}, "EmailTaken"),
        ({"username": "bob"}, "UsernameTaken"),
    ):
        response = await client.patch(
            f"{USERS}/{user.id}", headers=auth(settings, user), json=change
        )
        assert response.status_code == 409
        assert response.json()["error"] == error


async def test_changing_ones_password_needs_the_current_one(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    user = await make_user(uow, username="alice")
    url, headers = f"{USERS}/{user.id}", auth(settings, user)
    missing = await client.patch(url, headers=headers, json={"password": "new password 1"})
    assert missing.status_code == 422
    assert missing.json()["error"] == "CurrentPasswordRequired"
    wrong = await client.patch(
        url, headers=headers, json={"password": "new password 1", "current_password": "nope nope"}
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"] == "WrongPassword"
    ok = await client.patch(
        url, headers=headers, json={"password": "new password 1", "current_password": PASSWORD}
    )
    assert ok.status_code == 200
    token = "/api/v1/auth/token"
    assert (
        await client.post(token, data={"username": "alice", "password": PASSWORD})
    ).status_code == 401
    login = await client.post(token, data={"username": "alice", "password": "new password 1"})
    assert login.status_code == 200


async def test_a_superuser_resets_a_password_and_sets_privileged_fields(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    user = await make_user(uow, username="alice")
    admin = await make_user(uow, is_superuser=True)
    response = await client.patch(
        f"{USERS}/{user.id}",
        headers=auth(settings, admin),
        json={
            "password": "reset by admin",
            "status": "suspended",
            "credits": "10.05",
            "is_superuser": True,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["credits"], body["is_superuser"]) == ("suspended", "10.05", True)
    uow.session.expire_all()
    stored = await uow.session.scalar(select(User.credits).where(User.username == "alice"))
    assert stored == 1005


@pytest.mark.parametrize(
    "body",
    [
        {"email": None},
        {"username": None},
        {"credits": "-1.00"},
        {"credits": "1.005"},
        {"credits": 1.5},
        {"status": "banned"},
        {"id": 5},
        {"hashed_password": "$argon2id$..."},
        {"created_at": "2020-01-01T00:00:00Z"},
    ],
)
async def test_invalid_updates_are_422(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, body: dict[str, object]
) -> None:
    admin = await make_user(uow, is_superuser=True)
    response = await client.patch(f"{USERS}/{admin.id}", headers=auth(settings, admin), json=body)
    assert response.status_code == 422, response.text


async def test_patch_needs_a_token(client: AsyncClient, uow: UnitOfWork) -> None:
    user = await make_user(uow)
    response = await client.patch(f"{USERS}/{user.id}", json={"full_name": "x"})
    assert response.status_code == 401


async def test_a_superuser_patching_a_missing_user_gets_404(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    admin = await make_user(uow, is_superuser=True)
    response = await client.patch(
        f"{USERS}/999999", headers=auth(settings, admin), json={"full_name": "x"}
    )
    assert response.status_code == 404


# --- DELETE ---------------------------------------------------------------------------------


async def test_delete_is_soft_and_hides_the_user(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    user = await make_user(uow)
    user_id = user.id
    response = await client.delete(f"{USERS}/{user_id}", headers=auth(settings, user))
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"{USERS}/{user_id}")).status_code == 404
    listed = (await client.get(USERS)).json()
    assert user_id not in [u["id"] for u in listed["items"]]
    uow.session.expire_all()
    stmt = select(User.deleted_at).where(User.id == user_id)
    deleted_at = await uow.session.scalar(stmt.execution_options(include_deleted=True))
    assert deleted_at is not None  # the row is still there, hidden from ordinary reads


async def test_a_superuser_deletes_anyone_and_a_second_delete_is_404(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    user = await make_user(uow)
    admin = await make_user(uow, is_superuser=True)
    assert (
        await client.delete(f"{USERS}/{user.id}", headers=auth(settings, admin))
    ).status_code == 204
    assert (
        await client.delete(f"{USERS}/{user.id}", headers=auth(settings, admin))
    ).status_code == 404


# --- profile --------------------------------------------------------------------------------


async def test_profile_get_and_put(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    user = await make_user(uow)
    url = f"{USERS}/{user.id}/profile"
    empty = await client.get(url)
    assert empty.status_code == 200
    assert (empty.json()["bio"], empty.json()["avatar_url"]) == (None, None)

    put = await client.put(
        url,
        headers=auth(settings, user),
        json={"bio": "Hello", "avatar_url": "https://img.example.com/a.png", "location": "Paris"},
    )
    assert put.status_code == 200, put.text
    assert put.json()["avatar_url"] == "https://img.example.com/a.png"
    assert (await client.get(url)).json()["location"] == "Paris"
    assert (await client.get(f"{USERS}/{user.id}")).json()["profile"]["bio"] == "Hello"

    # PUT replaces: left-out fields are cleared.
    put = await client.put(url, headers=auth(settings, user), json={"bio": "Only bio"})
    assert put.json() == {**put.json(), "bio": "Only bio", "avatar_url": None, "location": None}


@pytest.mark.parametrize(
    "body",
    [
        {"avatar_url": "javascript:alert(1)"},
        {"avatar_url": "ftp://example.com/a.png"},
        {"avatar_url": "https://example.com/" + "a" * 500},
        {"bio": "x" * 2001},
        {"location": "x" * 101},
        {"user_id": 1},
    ],
)
async def test_invalid_profiles_are_422(
    client: AsyncClient, uow: UnitOfWork, settings: Settings, body: dict[str, object]
) -> None:
    user = await make_user(uow)
    response = await client.put(
        f"{USERS}/{user.id}/profile", headers=auth(settings, user), json=body
    )
    assert response.status_code == 422, response.text


# --- GET /users -----------------------------------------------------------------------------


async def _names(client: AsyncClient, **params: object) -> list[str]:
    response = await client.get(USERS, params=params)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return [u["username"] for u in response.json()["items"]]


async def test_list_pages_by_offset(client: AsyncClient, uow: UnitOfWork) -> None:
    for name in ("ann", "bob", "cat", "dan", "eve"):
        await make_user(uow, username=name)
    first = (await client.get(USERS, params={"limit": 2, "order_by": "username"})).json()
    assert [u["username"] for u in first["items"]] == ["ann", "bob"]
    assert (first["total"], first["offset"], first["limit"], first["has_more"]) == (5, 0, 2, True)
    assert set(first["items"][0]) == PUBLIC
    last = (
        await client.get(USERS, params={"limit": 2, "offset": 4, "order_by": "username"})
    ).json()
    assert [u["username"] for u in last["items"]] == ["eve"]
    assert last["has_more"] is False
    default = (await client.get(USERS)).json()
    assert default["limit"] == 20


async def test_list_orders_with_id_as_tie_breaker(client: AsyncClient, uow: UnitOfWork) -> None:
    users = [await make_user(uow, username=n) for n in ("bob", "ann", "cat")]
    same = utcnow()
    for u in users:
        u.created_at = same
    await uow.commit()
    assert await _names(client, order_by="username") == ["ann", "bob", "cat"]
    assert await _names(client, order_by="-username") == ["cat", "bob", "ann"]
    assert await _names(client, order_by="created_at") == ["bob", "ann", "cat"]  # by id
    assert await _names(client, order_by="-created_at") == ["cat", "ann", "bob"]


async def test_list_searches_username_and_full_name_case_insensitively(
    client: AsyncClient, uow: UnitOfWork
) -> None:
    await make_user(uow, username="alice", full_name="Alice Liddell")
    await make_user(uow, username="bob", full_name="Bob ALIgned")
    await make_user(uow, username="carol", full_name="Carol")
    assert await _names(client, q="ALI", order_by="username") == ["alice", "bob"]
    assert await _names(client, q="liddell") == ["alice"]
    assert await _names(client, q="zzz") == []


@pytest.mark.parametrize(
    ("q", "expected"), [("%", ["pct"]), ("_", ["under_score"]), ("\\", ["slash"]), ("/", ["fwd"])]
)
async def test_list_search_wildcards_match_literally(
    client: AsyncClient, uow: UnitOfWork, q: str, expected: list[str]
) -> None:
    await make_user(uow, username="pct", full_name="100% sure")
    await make_user(uow, username="under_score", full_name="Under")
    await make_user(uow, username="slash", full_name="Back\\slash")
    await make_user(uow, username="fwd", full_name="and/or")
    await make_user(uow, username="plain", full_name="Plain")
    assert await _names(client, q=q) == expected


async def test_status_filter_is_for_superusers(
    client: AsyncClient, uow: UnitOfWork, settings: Settings
) -> None:
    await make_user(uow, username="active1")
    await make_user(uow, username="suspended1", status=UserStatus.suspended)
    admin = await make_user(uow, username="admin", is_superuser=True)
    response = await client.get(
        USERS, params={"status": "suspended"}, headers=auth(settings, admin)
    )
    assert [u["username"] for u in response.json()["items"]] == ["suspended1"]
    assert set(response.json()["items"][0]) == PRIVATE
    user = await make_user(uow)
    for headers in ({}, auth(settings, user)):
        refused = await client.get(USERS, params={"status": "suspended"}, headers=headers)
        assert refused.status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"offset": 10_001},
        {"order_by": "hashed_password"},
        {"status": "banned"},
        {"q": "x" * 101},
        {"q": "a\x00b"},
        {"limit": "lots"},
    ],
)
async def test_bad_list_parameters_are_422(client: AsyncClient, params: dict[str, object]) -> None:
    response = await client.get(USERS, params=params)  # type: ignore[arg-type]
    assert response.status_code == 422, response.text
