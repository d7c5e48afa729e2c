"""FastAPI dependencies of the members domain: its services and the current user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from agora.config import Settings
from agora.db.api import ReadUoW, WriteUoW
from agora.db.uow import UnitOfWork
from agora.members.errors import InvalidToken, NotAuthenticated
from agora.members.ratelimit import LoginLimiter
from agora.members.repository import UserRepository
from agora.members.security import Passwords, Tokens
from agora.models.user import User

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a path, not a secret


@dataclass(frozen=True)
class Members:
    """The members domain's long-lived helpers, one set per application."""

    passwords: Passwords
    tokens: Tokens
    login_limiter: LoginLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> Members:
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        return cls(
            passwords=Passwords(
                memory_kib=settings.password_hash_memory_kib,
                time_cost=settings.password_hash_time_cost,
                parallelism=settings.password_hash_parallelism,
            ),
            tokens=Tokens(
                settings.secret_key.get_secret_value(),
                ttl=timedelta(minutes=settings.access_token_expire_minutes),
            ),
            login_limiter=LoginLimiter.create(
                redis_url=redis_url,
                per_account=settings.login_limit_per_account,
                per_address=settings.login_limit_per_address,
            ),
        )

    async def aclose(self) -> None:
        await self.login_limiter.aclose()


def get_members(request: Request) -> Members:
    members: Members = request.app.state.members
    return members


MembersDep = Annotated[Members, Depends(get_members)]

# auto_error=False: a missing token is our own 401 in the one error format.
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def _token_user_id(
    members: MembersDep, token: Annotated[str | None, Depends(_bearer)]
) -> int | None:
    return None if token is None else members.tokens.user_id(token)


TokenUserId = Annotated[int | None, Depends(_token_user_id)]


async def _load(uow: UnitOfWork, user_id: int | None) -> User:
    if user_id is None:
        raise NotAuthenticated()
    user = await uow.repo(UserRepository).get(user_id)
    # Deleted, inactive and suspended users' tokens stop working at once.
    if user is None or not user.is_active:
        raise InvalidToken()
    return user


async def _current_user(uow: ReadUoW, user_id: TokenUserId) -> User:
    return await _load(uow, user_id)


async def _current_user_for_write(uow: WriteUoW, user_id: TokenUserId) -> User:
    return await _load(uow, user_id)


async def _optional_user(uow: ReadUoW, user_id: TokenUserId) -> User | None:
    return None if user_id is None else await _load(uow, user_id)


# The user is loaded in the same unit of work as the endpoint's (FastAPI caches a dependency
# per request), so writes see and change that very object.
CurrentUser = Annotated[User, Depends(_current_user)]
"""The authenticated user, for endpoints that read (`ReadUoW`)."""
CurrentUserForWrite = Annotated[User, Depends(_current_user_for_write)]
"""The authenticated user, for endpoints that write (`WriteUoW`)."""
OptionalUser = Annotated[User | None, Depends(_optional_user)]
"""The authenticated user or None when no token is sent; a bad token is still a 401."""


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
