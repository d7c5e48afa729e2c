"""Data builders for the members tests: plain async functions."""

from __future__ import annotations

import itertools
from datetime import timedelta

from agora.config import Settings
from agora.db.uow import UnitOfWork
from agora.members.security import Passwords, Tokens
from agora.models.user import User, UserProfile, UserStatus

PASSWORD = "correct horse battery"
# Cheap Argon2id for tests; the app under test is configured with the same parameters (see
# tests/members/conftest.py), so its logins do not rehash these.
FAST_ARGON2 = {"memory_kib": 64, "time_cost": 1, "parallelism": 1}
fast_passwords = Passwords(**FAST_ARGON2)
_seq = itertools.count(1)


async def make_user(
    uow: UnitOfWork,
    *,
    username: str | None = None,
    email: str | None = None,
    password: str = PASSWORD,
    full_name: str = "",
    is_superuser: bool = False,
    status: UserStatus = UserStatus.active,
    credits: int = 0,
) -> User:
    n = next(_seq)
    username = username or f"user{n}"
    user = User(
        email=(email or f"{username}@example.com").lower(),
        username=username,
        full_name=full_name or f"User {n}",
        hashed_password=await fast_passwords.hash(password),
        is_superuser=is_superuser,
        status=status,
        credits=credits,
        profile=UserProfile(),
    )
    uow.session.add(user)
    await uow.commit()
    return user


def token_for(settings: Settings, user_id: int) -> str:
    tokens = Tokens(
        settings.secret_key.get_secret_value(),
        ttl=timedelta(minutes=settings.access_token_expire_minutes),
    )
    return tokens.issue(user_id).token


def auth(settings: Settings, user: User | int) -> dict[str, str]:
    user_id = user if isinstance(user, int) else user.id
    return {"Authorization": f"Bearer {token_for(settings, user_id)}"}
