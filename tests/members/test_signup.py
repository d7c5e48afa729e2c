"""POST /api/v1/users: sign-up."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from agora.db.uow import UnitOfWork
from agora.members.errors import EmailTaken, UsernameTaken
from agora.models.user import User, UserStatus
from tests.members.builders import make_user

URL = "/api/v1/users"
NEW = {"email": "Ada@Example.COM", "username": "ada", "password": "correct horse battery"}


async def test_sign_up_returns_the_private_view_and_stores_an_argon2id_hash(
    client: AsyncClient, uow: UnitOfWork
) -> None:
    response = await client.post(URL, json={**NEW, "full_name": "Ada Lovelace"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert body["username"] == "ada"
    assert body["full_name"] == "Ada Lovelace"
    assert body["status"] == "active"
    assert body["credits"] == "0.00"
    assert body["is_superuser"] is False
    assert body["profile"]["bio"] is None
    assert not {"password", "hashed_password"} & body.keys()
    assert "correct horse" not in response.text

    stored = (await uow.session.scalars(select(User).where(User.id == body["id"]))).one()
    assert stored.hashed_password.startswith("$argon2id$")
    assert stored.email == "ada@example.com"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"email": "ADA@example.com", "username": "other"}, "EmailTaken"),
        ({"email": "other@example.com", "username": "ADA"}, "UsernameTaken"),
    ],
)
async def test_taken_email_or_username_is_409(
    client: AsyncClient, change: dict[str, str], error: str
) -> None:
    assert (await client.post(URL, json=NEW)).status_code == 201
    response = await client.post(URL, json={**NEW, **change})
    assert response.status_code == 409
    assert response.json()["error"] == error


async def test_a_deleted_users_email_stays_taken(client: AsyncClient, uow: UnitOfWork) -> None:
    user = await make_user(uow, username="gone")
    from agora.db.base import utcnow

    user.deleted_at = utcnow()
    await uow.commit()
    response = await client.post(URL, json={**NEW, "email": "gone@example.com"})
    assert response.status_code == 409
    assert response.json()["error"] == "EmailTaken"


async def test_the_unique_constraints_map_to_domain_errors(uow: UnitOfWork) -> None:
    # What a request racing past the pre-check meets: the constraint, named.
    await make_user(uow, username="first", email="first@example.com")
    uow.session.add(User(email="first@example.com", username="second", hashed_password="x"))
    with pytest.raises(EmailTaken):
        await uow.commit()
    await uow.rollback()
    uow.session.add(User(email="third@example.com", username="first", hashed_password="x"))
    with pytest.raises(UsernameTaken):
        await uow.commit()


@pytest.mark.parametrize(
    "body",
    [
        {**NEW, "credits": "100.00"},
        {**NEW, "is_superuser": True},
        {**NEW, "status": "active"},
        {**NEW, "id": 7},
        {**NEW, "password": "short"},
        {**NEW, "password": "x" * 129},
        {**NEW, "username": "ab"},
        {**NEW, "username": "a" * 31},
        {**NEW, "username": "bad-name"},
        {**NEW, "email": "not-an-email"},
        {**NEW, "email": "a" * 250 + "@example.com"},
        {**NEW, "full_name": "x" * 101},
        {k: v for k, v in NEW.items() if k != "password"},
    ],
    ids=lambda b: ",".join(sorted(b)) if isinstance(b, dict) else str(b),
)
async def test_invalid_or_privileged_sign_up_is_422(
    client: AsyncClient, uow: UnitOfWork, body: dict[str, object]
) -> None:
    response = await client.post(URL, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "ValidationError"
    assert await uow.session.scalar(select(User.id).where(User.username == "ada")) is None


async def test_a_new_user_is_active_and_cannot_be_created_superuser(client: AsyncClient) -> None:
    body = (await client.post(URL, json=NEW)).json()
    assert body["status"] == UserStatus.active.value
    assert body["is_superuser"] is False
