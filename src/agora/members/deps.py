"""FastAPI dependencies of the members domain: its services and the current user."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer

from agora.config import Settings
from agora.db.api import read_unit, write_unit
from agora.db.errors import InvalidPagination
from agora.db.pagination import (
    CursorParams,
    PageParams,
    PaginationConfig,
    get_pagination_config,
)
from agora.db.uow import UnitOfWork
from agora.members.errors import InvalidToken, NotAuthenticated
from agora.members.ratelimit import LoginLimiter
from agora.members.repository import UserRepository, token_matches
from agora.members.security import Passwords, Tokens, TokenSubject
from agora.models.user import User

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a path, not a secret

T = TypeVar("T")


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


# The dependencies below are `async def` although they never await: FastAPI runs a plain
# `def` dependency in a worker thread, and two thread hops per request cost more than the
# work itself (a dict lookup, an HMAC check), under load they also fight for the GIL.
# https://fastapi.tiangolo.com/async/#dependencies
async def get_members(request: Request) -> Members:
    members: Members = request.app.state.members
    return members


MembersDep = Annotated[Members, Depends(get_members)]


class _BearerSubject(OAuth2PasswordBearer):
    """The bearer token's subject, in one dependency.

    An `OAuth2PasswordBearer` (so the OpenAPI still shows the password flow and Swagger UI's
    "Authorize" button) that also verifies the token. Reading the header and verifying it in
    two nested dependencies cost a second round of FastAPI's dependency solving on every
    authenticated request (bench/README.md, "Fourth round"). `auto_error=False`: a missing
    token is our own 401 in the one error format, raised where a user is required.
    """

    def __init__(self) -> None:
        super().__init__(tokenUrl=TOKEN_URL, scheme_name="OAuth2PasswordBearer", auto_error=False)

    async def subject(self, request: Request) -> TokenSubject | None:
        token = await OAuth2PasswordBearer.__call__(self, request)
        # The app's `Members` straight from the request rather than through `MembersDep`:
        # FastAPI spends more on solving a dependency than this lookup costs.
        return None if token is None else (await get_members(request)).tokens.subject(token)

    # The override returns the verified subject where the base class returns the raw token.
    async def __call__(self, request: Request) -> TokenSubject | None:  # type: ignore[override]
        return await self.subject(request)


_bearer_subject = _BearerSubject()


Bearer = Annotated[TokenSubject | None, Depends(_bearer_subject)]
"""The bearer token's subject (user id and token version), None without a token; a token
that does not verify is a 401. Whether the account still accepts it is for the database."""


async def bearer_subject(request: Request) -> TokenSubject | None:
    """What `Bearer` gives, for an endpoint that reads the token itself instead of declaring
    a dependency (FastAPI solves each dependency of a route on every request: ~6% of a
    one-query read). Such a route documents what the dependency would have: the security
    scheme (`openapi_extra=BEARER_SECURITY`) and its 401. An override of `Bearer` in
    `app.dependency_overrides` does not reach it."""
    return await _bearer_subject.subject(request)


BEARER_SECURITY: dict[str, Any] = {"security": [{_bearer_subject.scheme_name: []}]}
"""`openapi_extra` for a route that calls `bearer_subject`: the operation's security, as
FastAPI writes it for a `Bearer` dependency."""


async def _load(uow: UnitOfWork, subject: TokenSubject) -> User:
    user = await uow.repo(UserRepository).get(subject.user_id)
    # Deleted, inactive and suspended users' tokens stop working at once, and so do the
    # tokens issued before a password change.
    if user is None or not user.is_active or user.token_version != subject.version:
        raise InvalidToken()
    return user


async def _load_id(uow: UnitOfWork, subject: TokenSubject) -> int:
    # The same rule as `_load`, without building the User (and loading its profile).
    if not await uow.repo(UserRepository).token_is_current(subject.user_id, subject.version):
        raise InvalidToken()
    return subject.user_id


async def _load_view(uow: UnitOfWork, subject: TokenSubject) -> Mapping[str, Any]:
    row = await uow.repo(UserRepository).get_view(subject.user_id)
    # The rule of `_load`: deleted (absent here), inactive and suspended users' tokens fail,
    # and so do tokens older than the last password change.
    if row is None or not token_matches(row, subject):
        raise InvalidToken()
    return row


class _Caller(_BearerSubject, Generic[T]):
    """The caller, loaded from the token's subject in the request's unit of work: one dependency.

    The token is verified (`Bearer`), then `load` runs in the unit the endpoint's own `ReadUoW`
    or `WriteUoW` gets (`read_unit` / `write_unit`: one of each per request), so a write sees
    and changes the very object loaded here. Written as one dependency rather than one that
    declares `ReadUoW` and `Bearer`: FastAPI solves each dependency in a tree, cached or not,
    at ~6% of a one-query read's cost (bench/README.md, "Eighth round"). A missing token is a
    401 before any unit of work is opened.

    `uses` names the dependencies it calls directly, for what reads the dependency tree (the
    OpenAPI's implied error statuses, agora.openapi).
    """

    def __init__(
        self, load: Callable[[UnitOfWork, TokenSubject], Awaitable[T]], *, write: bool
    ) -> None:
        super().__init__()
        self._load = load
        self._unit = write_unit if write else read_unit
        self.uses = (_bearer_subject, self._unit)

    async def __call__(self, request: Request) -> T:  # type: ignore[override]
        subject = await self.subject(request)
        if subject is None:
            raise NotAuthenticated()
        return await self._load(await self._unit(request), subject)


class _OptionalCaller(_BearerSubject):
    """`_Caller` for endpoints open to all: None without a token (a bad one is still a 401)."""

    uses = (_bearer_subject, read_unit)

    async def __call__(self, request: Request) -> User | None:  # type: ignore[override]
        subject = await self.subject(request)
        return None if subject is None else await _load(await read_unit(request), subject)


CurrentUser = Annotated[User, Depends(_Caller(_load, write=False))]
"""The authenticated user, for endpoints that read (`ReadUoW`)."""
CurrentUserForWrite = Annotated[User, Depends(_Caller(_load, write=True))]
"""The authenticated user, for endpoints that write (`WriteUoW`)."""
CurrentUserIdForWrite = Annotated[int, Depends(_Caller(_load_id, write=True))]
"""The authenticated, active user's id, for writes that need nothing else of the caller
(one single-column SELECT instead of loading the user and its profile)."""
OptionalUser = Annotated[User | None, Depends(_OptionalCaller())]
"""The authenticated user or None when no token is sent; a bad token is still a 401."""

_current_user_view = _Caller(_load_view, write=False)


async def current_user_view(request: Request) -> Mapping[str, Any]:
    """The authenticated user's row and profile in one query (`UserRepository.get_view`), for
    an endpoint that only renders the caller and calls this itself (`GET /users/me`; see
    `bearer_subject`): a 401 without a valid token, the unit of work `read_unit`'s. Such a
    route documents the security scheme (`openapi_extra=BEARER_SECURITY`), 401 and 503."""
    return await _current_user_view(request)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Paging(StrEnum):
    offset = "offset"
    cursor = "cursor"


def _paging(
    config: Annotated[PaginationConfig, Depends(get_pagination_config)],
    limit: Annotated[
        int | None, Query(description="Rows per page (default and maximum: settings)")
    ] = None,
    offset: Annotated[
        int | None, Query(description="Offset paging: rows to skip (bounded)")
    ] = None,
    cursor: Annotated[
        str | None, Query(description="Cursor paging: a `next_cursor` or `prev_cursor`")
    ] = None,
    paging: Annotated[
        Paging | None,
        Query(description="`cursor` starts cursor paging; implied by `cursor`, default `offset`"),
    ] = None,
) -> PageParams | CursorParams:
    """`?limit&offset` (offset pages) or `?limit&cursor` / `?paging=cursor` (keyset pages).

    The bounds come from `app.state.pagination` (settings `AGORA_PAGE_*`); a request that mixes
    the two kinds is refused rather than guessed at.
    """
    if offset is not None and (cursor is not None or paging is Paging.cursor):
        raise InvalidPagination(
            "offset and cursor paging do not mix: send `offset` for offset pages, or `cursor` "
            "(`paging=cursor` for the first page) for cursor pages"
        )
    if cursor is not None and paging is Paging.offset:
        raise InvalidPagination("a cursor cannot be used with paging=offset")
    if cursor is not None or paging is Paging.cursor:
        return config.cursor_params(limit=limit, cursor=cursor)
    return config.page_params(limit=limit, offset=offset)


ListPaging = Annotated[PageParams | CursorParams, Depends(_paging)]
"""Checked pagination parameters of a listing: offset (`PageParams`) or keyset (`CursorParams`)."""
