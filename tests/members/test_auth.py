"""POST /api/v1/auth/token and bearer authentication."""

from __future__ import annotations

from datetime import timedelta

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from agora.db.base import utcnow
from agora.db.uow import UnitOfWork
from agora.members.deps import Members
from agora.members.security import Passwords, Tokens
from agora.models.user import User, UserStatus
from tests.members.builders import PASSWORD, auth, make_user
from tests.members.test_security import _forgeries

TOKEN = "/api/v1/auth/token"
ME = "/api/v1/users/me"


async def _login(client: AsyncClient, username: str, password: str = PASSWORD) -> object:
    return await client.post(TOKEN, data={"username": username, "password": password})


@pytest.mark.parametrize("login", ["alice", "ALICE@example.com", "alice@example.com"])
async def test_login_by_username_or_email_gives_a_working_token(
    client: AsyncClient, uow: UnitOfWork, login: str
) -> None:
    user = await make_user(uow, username="alice")
    response = await client.post(TOKEN, data={"username": login, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    me = await client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == user.id
    assert me.json()["email"] == "alice@example.com"


@pytest.mark.parametrize(
    ("login", "password"), [("alice", "wrong password!"), ("nobody", PASSWORD)]
)
async def test_bad_credentials_are_401_with_bearer_challenge(
    client: AsyncClient, uow: UnitOfWork, login: str, password: str
) -> None:
    await make_user(uow, username="alice")
    response = await client.post(TOKEN, data={"username": login, "password": password})
    assert response.status_code == 401
    assert response.json() == {
        "error": "InvalidCredentials",
        "detail": "Incorrect username or password",
    }
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_unknown_account_costs_a_password_check(
    client: AsyncClient, members: Members, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    real_verify = Passwords.verify

    async def counting_verify(
        self: Passwords, password: str, hashed: str
    ) -> tuple[bool, str | None]:
        checks.append(hashed)
        return await real_verify(self, password, hashed)

    monkeypatch.setattr(Passwords, "verify", counting_verify)
    response = await client.post(TOKEN, data={"username": "nobody", "password": PASSWORD})
    assert response.status_code == 401
    assert len(checks) == 1
    assert checks[0].startswith("$argon2id$v=19$m=64,t=1,p=1$")  # same cost as a real check


async def test_a_deleted_account_cannot_log_in(client: AsyncClient, uow: UnitOfWork) -> None:
    user = await make_user(uow, username="alice")
    user.deleted_at = utcnow()
    await uow.commit()
    assert (
        await client.post(TOKEN, data={"username": "alice", "password": PASSWORD})
    ).status_code == 401


@pytest.mark.parametrize("status", [UserStatus.inactive, UserStatus.suspended])
async def test_inactive_or_suspended_accounts_cannot_log_in(
    client: AsyncClient, uow: UnitOfWork, status: UserStatus
) -> None:
    await make_user(uow, username="alice", status=status)
    response = await client.post(TOKEN, data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json()["error"] == "AccountDisabled"


@pytest.mark.parametrize("change", ["deleted", "inactive", "suspended"])
async def test_tokens_stop_working_when_the_account_does(
    client: AsyncClient, uow: UnitOfWork, settings: object, change: str
) -> None:
    user = await make_user(uow, username="alice")
    other = await make_user(uow, username="bob")
    token = (await client.post(TOKEN, data={"username": "alice", "password": PASSWORD})).json()[
        "access_token"
    ]
    headers = {"Authorization": f"Bearer {token}"}
    # /me, the user's own page (private view) and someone else's (public view).
    paths = (ME, f"/api/v1/users/{user.id}", f"/api/v1/users/{other.id}")
    for path in paths:
        assert (await client.get(path, headers=headers)).status_code == 200
    if change == "deleted":
        user.deleted_at = utcnow()
    else:
        user.status = UserStatus(change)
    await uow.commit()
    for path in paths:
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.json()["error"] == "InvalidToken"
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_login_rehashes_a_password_hashed_with_old_parameters(
    client: AsyncClient, uow: UnitOfWork
) -> None:
    user = await make_user(uow, username="alice")
    user.hashed_password = await Passwords(memory_kib=32, time_cost=1, parallelism=1).hash(PASSWORD)
    await uow.commit()
    old, user_id = user.hashed_password, user.id
    assert (
        await client.post(TOKEN, data={"username": "alice", "password": PASSWORD})
    ).status_code == 200
    uow.session.expire_all()
    stored = await uow.session.scalar(select(User.hashed_password).where(User.id == user_id))
    assert stored != old
    assert stored is not None
    assert stored.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    # and the new hash still logs in
    assert (
        await client.post(TOKEN, data={"username": "alice", "password": PASSWORD})
    ).status_code == 200


async def test_no_token_is_401_with_bearer_challenge(client: AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic YWxpY2U6cHc="}, {"Authorization": "Bearer"}):
        response = await client.get(ME, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "kind",
    [
        "alg none",
        "expired",
        "missing exp",
        "missing sub",
        "bad signature",
        "tampered payload",
        "foreign secret",
        "other algorithm",
        "sub out of range",
        "garbage",
        "huge",
    ],
)
async def test_forged_tokens_are_401(
    client: AsyncClient, members: Members, uow: UnitOfWork, kind: str
) -> None:
    await make_user(uow)
    await make_user(uow)
    forged = _forgeries(members.tokens)[kind]
    response = await client.get(ME, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401, kind
    assert response.json()["error"] == "InvalidToken"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_for_a_user_that_never_existed_is_401(
    client: AsyncClient, settings: object
) -> None:
    from agora.config import Settings

    assert isinstance(settings, Settings)
    response = await client.get(ME, headers=auth(settings, 2**31 - 1))
    assert response.status_code == 401


async def test_tokens_expire(client: AsyncClient, uow: UnitOfWork, members: Members) -> None:
    user = await make_user(uow)
    tokens = Tokens("unused", ttl=timedelta(minutes=5))
    tokens._key = members.tokens._key
    stale = tokens.issue(user.id, now=utcnow() - timedelta(minutes=6)).token
    response = await client.get(ME, headers={"Authorization": f"Bearer {stale}"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "form",
    [
        {"username": "ali\x00ce", "password": PASSWORD},
        {"username": "alice", "password": "pw\x00" * 3},
        {"username": "a" * 300, "password": PASSWORD},
        {"username": "alice", "password": "x" * 200},
        {"username": "alice"},
        {"username": "alice", "password": PASSWORD, "grant_type": "client_credentials"},
    ],
)
async def test_malformed_login_forms_are_422(client: AsyncClient, form: dict[str, str]) -> None:
    response = await client.post(TOKEN, data=form)
    assert response.status_code == 422, response.text


async def test_json_login_is_422_not_500(client: AsyncClient) -> None:
    response = await client.post(TOKEN, json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 422


async def test_a_bad_token_is_401_even_where_a_token_is_optional(
    client: AsyncClient, uow: UnitOfWork
) -> None:
    user = await make_user(uow)
    headers = {"Authorization": "Bearer not.a.token"}
    for url in (f"/api/v1/users/{user.id}", "/api/v1/users"):
        response = await client.get(url, headers=headers)
        assert response.status_code == 401, url
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_password_change_ends_every_token_issued_before_it(
    client: AsyncClient, uow: UnitOfWork
) -> None:
    alice = await make_user(uow, username="alice", credits=10_00)
    bob = await make_user(uow, username="bob")
    await make_user(uow, username="root", is_superuser=True)

    async def token(username: str, password: str = PASSWORD) -> dict[str, str]:
        response = await client.post(TOKEN, data={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    async def statuses(headers: dict[str, str]) -> list[int]:
        transfer = {"to_user_id": bob.id, "amount": "0.01"}
        responses = [
            await client.get(ME, headers=headers),  # the view dependency
            await client.get(f"/api/v1/users/{alice.id}", headers=headers),  # own page
            await client.get(f"/api/v1/users/{bob.id}", headers=headers),  # someone else's
            await client.get("/api/v1/credits/transfers", headers=headers),  # the User loader
            await client.post("/api/v1/credits/transfers", json=transfer, headers=headers),
        ]
        return [r.status_code for r in responses]

    phone, laptop = await token("alice"), await token("alice")
    assert await statuses(laptop) == [200, 200, 200, 200, 201]
    changed = await client.patch(
        f"/api/v1/users/{alice.id}",
        headers=phone,
        json={"password": "new password 1", "current_password": PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    for old in (phone, laptop):  # the device that changed it too: log in again
        assert await statuses(old) == [401] * 5
    fresh = await token("alice", "new password 1")
    assert await statuses(fresh) == [200, 200, 200, 200, 201]

    # A superuser resetting the password ends the owner's sessions, not the superuser's.
    admin_headers = await token("root")
    reset = await client.patch(
        f"/api/v1/users/{alice.id}", headers=admin_headers, json={"password": "new password 2"}
    )
    assert reset.status_code == 200, reset.text
    assert await statuses(fresh) == [401] * 5
    assert (await client.get(ME, headers=admin_headers)).status_code == 200
    assert await statuses(await token("alice", "new password 2")) == [200, 200, 200, 200, 201]


async def test_other_changes_leave_tokens_working(client: AsyncClient, uow: UnitOfWork) -> None:
    alice = await make_user(uow, username="alice")
    response = await client.post(TOKEN, data={"username": "alice", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    renamed = await client.patch(
        f"/api/v1/users/{alice.id}", headers=headers, json={"full_name": "Alice B"}
    )
    assert renamed.status_code == 200
    assert (await client.get(ME, headers=headers)).json()["full_name"] == "Alice B"
