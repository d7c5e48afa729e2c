"""SQL for users and profiles. Returns None when a row is missing; never commits.

Soft-deleted users are filtered out explicitly here (`User.deleted_at IS NULL`) until the
shared `agora.db` Repository, which does it for every read, replaces this class.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.elements import ColumnElement

from agora.members.listing import contains_ci
from agora.models.user import User, UserProfile, UserStatus


class UserOrder(StrEnum):
    created_at = "created_at"
    created_at_desc = "-created_at"
    username = "username"
    username_desc = "-username"
    id = "id"
    id_desc = "-id"


_ORDER_COLUMNS = {"created_at": User.created_at, "username": User.username, "id": User.id}


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _live(self) -> Select[User]:
        return select(User).where(User.deleted_at.is_(None)).options(selectinload(User.profile))

    async def _one(self, *where: ColumnElement[bool]) -> User | None:
        result = await self.session.scalars(self._live().where(*where))
        return result.one_or_none()

    async def get(self, user_id: int) -> User | None:
        return await self._one(User.id == user_id)

    async def get_by_email(self, email: str) -> User | None:
        return await self._one(User.email == email.lower())

    async def get_by_username(self, username: str) -> User | None:
        return await self._one(User.username == username.lower())

    async def get_by_login(self, login: str) -> User | None:
        """The user whose email or username is `login` (emails contain "@", usernames cannot)."""
        return await (self.get_by_email(login) if "@" in login else self.get_by_username(login))

    async def exists_email(self, email: str) -> bool:
        return await self._exists(User.email == email.lower())

    async def exists_username(self, username: str) -> bool:
        return await self._exists(User.username == username.lower())

    async def _exists(self, where: ColumnElement[bool]) -> bool:
        # Deleted users included: their email and username stay taken (unique constraint).
        found = await self.session.scalar(select(User.id).where(where).limit(1))
        return found is not None

    def list_users(
        self,
        *,
        q: str | None = None,
        status: UserStatus | None = None,
        order_by: UserOrder = UserOrder.created_at,
    ) -> Select[User]:
        """A statement for live users matching `q` (username or full name) and `status`.

        Always ordered, with the id as tie-breaker so pages never overlap or skip.
        """
        stmt = self._live()
        if q:
            stmt = stmt.where(contains_ci(User.username, q) | contains_ci(User.full_name, q))
        if status is not None:
            stmt = stmt.where(User.status == status)
        descending = order_by.value.startswith("-")
        column = _ORDER_COLUMNS[order_by.value.lstrip("-")]
        if descending:
            return stmt.order_by(column.desc(), User.id.desc())
        return stmt.order_by(column.asc(), User.id.asc())

    def add(self, user: User) -> None:
        self.session.add(user)

    async def get_profile(self, user_id: int) -> UserProfile | None:
        result = await self.session.scalars(
            select(UserProfile).where(UserProfile.user_id == user_id)
        )
        return result.one_or_none()

    async def replace_password_hash(self, user_id: int, *, old: str, new: str) -> None:
        """Store a rehashed password, unless the password changed since `old` was read."""
        await self.session.execute(
            update(User)
            .where(User.id == user_id, User.hashed_password == old)
            .values(hashed_password=new)
        )
