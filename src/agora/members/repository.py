"""SQL for users, on top of `agora.db.repository.Repository`. Never commits.

Soft-deleted users are hidden from every read by the global soft-delete hook
(`agora.db.softdelete`); the few queries that must see them say `include_deleted=True`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from sqlalchemy import Integer, Select, bindparam, or_, select, update
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement

from agora.db.filters import contains, eq, given
from agora.db.pagination import CursorPage, CursorParams, Page, PageParams
from agora.db.prepared import Prepared
from agora.db.repository import Load, OrderBy, Repository, Where
from agora.members.errors import UserNotFound
from agora.members.schemas import PROFILE_COLUMNS, VIEW_COLUMNS
from agora.members.security import TokenSubject
from agora.models.user import User, UserProfile, UserStatus


class UserOrder(StrEnum):
    created_at = "created_at"
    created_at_desc = "-created_at"
    username = "username"
    username_desc = "-username"
    id = "id"
    id_desc = "-id"

    def clauses(self) -> builtins.list[ColumnElement[Any]]:
        """The ORDER BY of this ordering, the id breaking ties in the same direction.

        The same clauses drive offset and cursor pages, so both list users in one order.
        """
        column = _ORDER_COLUMNS[self.value.lstrip("-")]
        if self.value.startswith("-"):
            return [column.desc()] if column is User.id else [column.desc(), User.id.desc()]
        return [column.asc()] if column is User.id else [column.asc(), User.id.asc()]


_ORDER_COLUMNS: dict[str, QueryableAttribute[Any]] = {
    "created_at": User.created_at,
    "username": User.username,
    "id": User.id,
}


def user_filters(*, q: str | None, status: UserStatus | None) -> builtins.list[ColumnElement[bool]]:
    """`q` in the username or full name (case-insensitive, wildcards literal), and `status`."""
    search = given(contains(User.username, q), contains(User.full_name, q))
    return given(or_(*search) if search else None, eq(User.status, status))


# Built once: the check behind every authenticated write that needs only the caller's id.
# It filters deleted rows itself, so the soft-delete hook stays out (`include_deleted`).
_user = User.metadata.tables[User.__tablename__]
_ACTIVE_ID = (
    select(_user.c.id)
    .where(
        _user.c.id == bindparam("user_id", type_=Integer),
        _user.c.status == UserStatus.active,
        _user.c.deleted_at.is_(None),
    )
    .execution_options(include_deleted=True)
)
# The id of an active, not deleted user whose token version is the token's: the check every
# authenticated request makes (a password change bumps the version).
_current = _ACTIVE_ID.where(_user.c.token_version == bindparam("version", type_=Integer))
_CURRENT_TOKEN = Prepared(_current)
# Whether a token's user may see private views: their `is_superuser` when the token is
# current (see above), no row otherwise.
_VIEWER_IS_SUPERUSER = Prepared(_current.with_only_columns(_user.c.is_superuser))
# Built once: a user and their profile in ONE query (a LEFT JOIN), as plain columns, for the
# single-user reads (`GET /users/{id}`, `GET /users/me`). Loading a `User` costs two queries
# (the profile is a selectinload) and the ORM's identity map and object construction; these
# reads only render the row. Profile columns are prefixed `profile_`.
_profile = UserProfile.metadata.tables[UserProfile.__tablename__]
_USER_VIEW = Prepared(
    select(
        *(_user.c[name] for name in VIEW_COLUMNS),
        _user.c.token_version,  # not shown: for `token_matches` (GET /users/me)
        *(_profile.c[name].label(f"profile_{name}") for name in PROFILE_COLUMNS),
    )
    .select_from(_user.outerjoin(_profile, _profile.c.user_id == _user.c.id))
    .where(_user.c.id == bindparam("user_id", type_=Integer), _user.c.deleted_at.is_(None))
    .execution_options(include_deleted=True)
)


def token_matches(row: Mapping[str, Any], subject: TokenSubject) -> bool:
    """Whether `row` (of `UserRepository.get_view`, for the token's user) accepts the token:
    the user is active and the token's version is the row's."""
    return row["status"] is UserStatus.active and row["token_version"] == subject.version


class UserRepository(Repository[User]):
    model = User
    not_found = UserNotFound

    async def get_view(self, user_id: int) -> dict[str, Any] | None:
        """A not deleted user's row with their profile's (`profile_*`, NULL without one),
        in one query; None when absent. See `agora.members.schemas.user_view_json`."""
        return await _USER_VIEW.one_or_none(self.unit_or_session, user_id=user_id)

    async def viewer_is_superuser(self, user_id: int, version: int) -> bool | None:
        """Whether `user_id` is a superuser; None unless their token (of `version`) is
        current: the user active, not deleted, `version` theirs (one single-column SELECT)."""
        result: bool | None = await _VIEWER_IS_SUPERUSER.scalar(
            self.unit_or_session, user_id=user_id, version=version
        )
        return result

    async def token_is_current(self, user_id: int, version: int) -> bool:
        """Whether a token of `user_id` and `version` still works: the user active, not
        deleted, and no password change since it was issued (one single-column SELECT)."""
        row = await _CURRENT_TOKEN.one_or_none(
            self.unit_or_session, user_id=user_id, version=version
        )
        return row is not None

    def select_stmt(
        self,
        *,
        where: Where = (),
        order_by: OrderBy = (),
        load: Iterable[Load] = (),
        limit: int | None = None,
        include_deleted: bool = False,
    ) -> Select[User]:
        """Users always come with their profile: every view of a user shows it."""
        return super().select_stmt(
            where=where,
            order_by=order_by,
            load=(User.profile, *load),
            limit=limit,
            include_deleted=include_deleted,
        )

    async def get_by_email(self, email: str) -> User | None:
        return await self.one_or_none(self.select_stmt(where=[User.email == email.lower()]))

    async def get_by_username(self, username: str) -> User | None:
        return await self.one_or_none(self.select_stmt(where=[User.username == username.lower()]))

    async def get_by_login(self, login: str) -> User | None:
        """The user whose email or username is `login` (emails contain "@", usernames cannot)."""
        return await (self.get_by_email(login) if "@" in login else self.get_by_username(login))

    # Deleted users included: their email and username stay taken (unique constraints).
    async def exists_email(self, email: str) -> bool:
        return await self.exists(where=[User.email == email.lower()], include_deleted=True)

    async def exists_username(self, username: str) -> bool:
        return await self.exists(where=[User.username == username.lower()], include_deleted=True)

    async def page_users(
        self, params: PageParams, *, where: Where = (), order: UserOrder = UserOrder.created_at
    ) -> Page[User]:
        """An offset page, with the total."""
        return await self.page(params, where=where, order_by=order.clauses())

    async def cursor_page_users(
        self, params: CursorParams, *, where: Where = (), order: UserOrder = UserOrder.created_at
    ) -> CursorPage[User]:
        """A keyset page; its cursors only work with the same `order`."""
        return await self.cursor_page(params, where=where, order_by=order.clauses())

    async def replace_password_hash(self, user_id: int, *, old: str, new: str) -> None:
        """Store a rehashed password, unless the password changed since `old` was read."""
        await self.session.execute(
            update(User)
            .where(User.id == user_id, User.hashed_password == old)
            .values(hashed_password=new)
        )
