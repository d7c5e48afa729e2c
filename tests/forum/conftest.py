"""Fixtures for the forum tests: a few users to write and read posts."""

from __future__ import annotations

import pytest

from agora.config import Settings
from agora.db.uow import UnitOfWork
from agora.models.user import User
from tests.members.builders import auth, make_user


@pytest.fixture
async def alice(uow: UnitOfWork) -> User:
    return await make_user(uow)


@pytest.fixture
async def bob(uow: UnitOfWork) -> User:
    return await make_user(uow)


@pytest.fixture
async def admin(uow: UnitOfWork) -> User:
    return await make_user(uow, is_superuser=True)


@pytest.fixture
def as_alice(settings: Settings, alice: User) -> dict[str, str]:
    return auth(settings, alice)


@pytest.fixture
def as_bob(settings: Settings, bob: User) -> dict[str, str]:
    return auth(settings, bob)


@pytest.fixture
def as_admin(settings: Settings, admin: User) -> dict[str, str]:
    return auth(settings, admin)
