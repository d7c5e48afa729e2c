"""Members' HTTP API: sign-up, login, users and profiles (mounted under /api/v1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from agora.db.api import ReadUoW, WriteUoW, read_unit
from agora.db.errors import Invalid
from agora.db.filters import MAX_SEARCH_LENGTH
from agora.db.pagination import CursorPage, Page
from agora.members import service
from agora.members.deps import (
    BEARER_SECURITY,
    CurrentUserForWrite,
    ListPaging,
    MembersDep,
    OptionalUser,
    bearer_subject,
    client_address,
    current_user_view,
)
from agora.members.repository import UserOrder
from agora.members.schemas import (
    ProfileRead,
    ProfileUpdate,
    TokenResponse,
    UserCreate,
    UserPrivate,
    UserPublic,
    UserUpdate,
    user_view_json,
)
from agora.members.security import MAX_USER_ID, PASSWORD_MAX
from agora.models.user import EMAIL_MAX, User, UserStatus
from agora.openapi import errors
from agora.routing import PrefixRouter

router = APIRouter()

UserId = Annotated[int, Path(ge=1, le=MAX_USER_ID, description="A user's id")]
UserView = UserPrivate | UserPublic


def _view(user: User, viewer: User | None) -> UserView:
    if service.can_manage(viewer, user.id):
        return UserPrivate.model_validate(user)
    return UserPublic.model_validate(user)


@router.post(
    "/auth/token", tags=["auth"], response_model=TokenResponse, responses=errors(401, 403, 429)
)
async def issue_token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    uow: WriteUoW,
    members: MembersDep,
) -> TokenResponse:
    """Log in with a username or email and a password (OAuth2 password form)."""
    for field, value, limit in (
        ("username", form.username, EMAIL_MAX),
        ("password", form.password, PASSWORD_MAX),
    ):
        if len(value) > limit or "\x00" in value:
            raise Invalid(f"{field}: at most {limit} characters, no NUL characters")
    token = await service.log_in(
        uow,
        login=form.username,
        password=form.password,
        address=client_address(request),
        passwords=members.passwords,
        tokens=members.tokens,
        limiter=members.login_limiter,
    )
    return TokenResponse(access_token=token.token, expires_in=token.expires_in)


users = PrefixRouter(prefix="/users", tags=["users"])


@users.post("", status_code=status.HTTP_201_CREATED, response_model=UserPrivate)
async def sign_up(data: UserCreate, uow: WriteUoW, members: MembersDep) -> UserPrivate:
    """Create an account (409 `EmailTaken` / `UsernameTaken`)."""
    user = await service.register_user(uow, data=data, passwords=members.passwords)
    return UserPrivate.model_validate(user)


@users.get("", response_model=Page[UserView] | CursorPage[UserView], responses=errors(403))
async def list_users(
    uow: ReadUoW,
    viewer: OptionalUser,
    paging: ListPaging,
    q: Annotated[
        str | None, Query(max_length=MAX_SEARCH_LENGTH, description="In username or full name")
    ] = None,
    status: Annotated[UserStatus | None, Query(description="Superusers only")] = None,
    order_by: Annotated[
        UserOrder, Query(description="`-` for descending; a cursor only works with its own")
    ] = UserOrder.created_at,
) -> Page[UserView] | CursorPage[UserView]:
    """List users, oldest first by default, by offset or by cursor; private views for superusers."""
    if q is not None and "\x00" in q:
        raise Invalid("q: no NUL characters")
    page = await service.list_users(
        uow, viewer=viewer, q=q, status=status, order_by=order_by, paging=paging
    )
    shown_to = viewer if viewer and viewer.is_superuser else None
    items = [_view(user, shown_to) for user in page.items]
    if isinstance(page, CursorPage):
        return CursorPage[UserView](
            items=items,
            next_cursor=page.next_cursor,
            prev_cursor=page.prev_cursor,
            limit=page.limit,
        )
    return Page[UserView](
        items=items,
        total=page.total,
        offset=page.offset,
        limit=page.limit,
        has_more=page.has_more,
    )


# The two single-user reads below are the hottest paths of the service: one query each (the
# user and profile joined), validated and serialized once into the response body; see
# bench/README.md ("Profiling and fixes"). `response_model` still documents the body.
# The service's two hottest reads declare no dependency: the caller, the token's subject and
# the unit come from `current_user_view(request)`, `bearer_subject(request)` and
# `read_unit(request)`, what `CurrentUser`-like dependencies, `Bearer` and `ReadUoW` would
# give, without FastAPI solving a dependency on every request for each (~6% of such a read
# each; bench/README.md, "Ninth round"). What they would imply in the OpenAPI is declared
# here: the security scheme, 401 and 503.
@users.get(
    "/me",
    response_model=UserPrivate,
    responses=errors(401, 503),
    openapi_extra=BEARER_SECURITY,
)
async def read_me(request: Request) -> Response:
    """The authenticated user, private view."""
    return _json(user_view_json(await current_user_view(request), private=True))


@users.get(
    "/{user_id}",
    response_model=UserView,
    responses=errors(401, 404, 503),
    openapi_extra=BEARER_SECURITY,
)
async def read_user(user_id: UserId, request: Request) -> Response:
    """A user: private view for self and superusers, public view otherwise."""
    viewer = await bearer_subject(request)
    uow = await read_unit(request)
    row, private = await service.get_user_view(uow, user_id=user_id, viewer=viewer)
    return _json(user_view_json(row, private=private))


def _json(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


@users.patch("/{user_id}", response_model=UserPrivate, responses=errors(403, 404))
async def update_user(
    user_id: UserId,
    data: UserUpdate,
    uow: WriteUoW,
    actor: CurrentUserForWrite,
    members: MembersDep,
) -> UserPrivate:
    """Change some fields (self or superuser; status, is_superuser, credits: superuser)."""
    user = await service.update_user(
        uow, actor=actor, user_id=user_id, data=data, passwords=members.passwords
    )
    return UserPrivate.model_validate(user)


@users.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 404))
async def delete_user(user_id: UserId, uow: WriteUoW, actor: CurrentUserForWrite) -> Response:
    """Delete an account (soft; self or superuser). Its tokens stop working."""
    await service.delete_user(uow, actor=actor, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@users.get("/{user_id}/profile", response_model=ProfileRead, responses=errors(404))
async def read_profile(user_id: UserId, uow: ReadUoW) -> ProfileRead:
    """A user's profile."""
    return ProfileRead.model_validate(await service.get_profile(uow, user_id=user_id))


@users.put("/{user_id}/profile", response_model=ProfileRead, responses=errors(403, 404))
async def replace_profile(
    user_id: UserId, data: ProfileUpdate, uow: WriteUoW, actor: CurrentUserForWrite
) -> ProfileRead:
    """Replace a user's profile (self or superuser); fields left out are cleared."""
    profile = await service.replace_profile(uow, actor=actor, user_id=user_id, data=data)
    return ProfileRead.model_validate(profile)


# Included one by one by the app (`routers`), not nested: FastAPI matches a nested router's
# routes once per level (bench/README.md, "Fourth round").
routers = (router, users)
