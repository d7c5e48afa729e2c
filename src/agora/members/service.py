"""Members' use cases. Each write commits once, at the end; errors are domain errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from agora.credits.service import set_balance
from agora.db.errors import Conflict
from agora.db.pagination import CursorPage, CursorParams, Page, PageParams
from agora.db.uow import UnitOfWork
from agora.members.errors import (
    AccountDisabled,
    CurrentPasswordRequired,
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    NotAllowed,
    PrivilegedField,
    PrivilegedFilter,
    ProfileNotFound,
    UsernameTaken,
    UserNotFound,
    WrongPassword,
)
from agora.members.ratelimit import LoginLimiter
from agora.members.repository import UserOrder, UserRepository, token_matches, user_filters
from agora.members.schemas import PRIVILEGED_FIELDS, ProfileUpdate, UserCreate, UserUpdate
from agora.members.security import AccessToken, Passwords, Tokens, TokenSubject
from agora.models.user import User, UserProfile, UserStatus


def can_manage(actor: User | None, user_id: int) -> bool:
    """Self or superuser: who may see the private view, update or delete `user_id`."""
    return actor is not None and (actor.id == user_id or actor.is_superuser)


async def register_user(uow: UnitOfWork, *, data: UserCreate, passwords: Passwords) -> User:
    # Hash before the first query: no transaction (or SQLite write lock) is held meanwhile.
    hashed = await passwords.hash(data.password)
    users = uow.repo(UserRepository)
    # Friendly pre-checks; a concurrent sign-up that slips past them is refused by the
    # unique constraints at commit, which agora.db.errors turns into the same 409s.
    if await users.exists_email(data.email):
        raise EmailTaken()
    if await users.exists_username(data.username):
        raise UsernameTaken()
    user = User(
        email=data.email,
        username=data.username,
        full_name=data.full_name,
        hashed_password=hashed,
        profile=UserProfile(),
    )
    await users.add(user)
    await uow.commit()
    return user


async def log_in(
    uow: UnitOfWork,
    *,
    login: str,
    password: str,
    address: str,
    passwords: Passwords,
    tokens: Tokens,
    limiter: LoginLimiter,
) -> AccessToken:
    """Check a username-or-email and password; return an access token.

    Unknown and deleted accounts cost one dummy Argon2 check, so they answer in the same
    time as a wrong password. A hash made with outdated parameters is replaced.
    """
    await limiter.hit_address(address)
    users = uow.repo(UserRepository)
    user = await users.get_by_login(login)
    await limiter.hit_account(f"user:{user.id}" if user else f"login:{login.lower()}")
    if user is None:
        await passwords.verify_dummy(password)
        raise InvalidCredentials()
    user_id, hashed, status = user.id, user.hashed_password, user.status
    version = user.token_version  # a password change meanwhile makes this token stale at once
    # End the read transaction before Argon2 runs (tens of ms): hold no lock or snapshot.
    await uow.rollback()
    ok, new_hash = await passwords.verify(password, hashed)
    if not ok:
        raise InvalidCredentials()
    if status is not UserStatus.active:
        raise AccountDisabled()
    if new_hash is not None:
        await users.replace_password_hash(user_id, old=hashed, new=new_hash)
        await uow.commit()
    return tokens.issue(user_id, version=version)


async def get_user(uow: UnitOfWork, *, user_id: int) -> User:
    return await uow.repo(UserRepository).get_one(user_id)  # UserNotFound when absent


async def get_user_view(
    uow: UnitOfWork, *, user_id: int, viewer: TokenSubject | None
) -> tuple[Mapping[str, Any], bool]:
    """A user with their profile as one row (`UserRepository.get_view`), and whether the
    viewer (a token's subject, or None) may see the private view: self or a superuser.

    `UserNotFound`; `InvalidToken` when the viewer's token no longer works (the rule of every
    authenticated route). One query, two when the viewer is someone else.
    """
    users = uow.repo(UserRepository)
    private = False
    own = viewer is not None and viewer.user_id == user_id
    if viewer is not None and not own:
        is_superuser = await users.viewer_is_superuser(viewer.user_id, viewer.version)
        if is_superuser is None:
            raise InvalidToken()
        private = is_superuser
    row = await users.get_view(user_id)
    if viewer is not None and own:  # the viewer's own row tells whether their token works
        if row is None or not token_matches(row, viewer):
            raise InvalidToken()
        private = True
    if row is None:
        raise UserNotFound()
    return row, private


async def list_users(
    uow: UnitOfWork,
    *,
    viewer: User | None,
    q: str | None,
    status: UserStatus | None,
    order_by: UserOrder,
    paging: PageParams | CursorParams,
) -> Page[User] | CursorPage[User]:
    """An offset page (with a total) or a keyset page (with cursors), as `paging` asks."""
    # Public views do not show a status, so filtering by it is a superuser's tool.
    if status is not None and not (viewer is not None and viewer.is_superuser):
        raise PrivilegedFilter()
    users = uow.repo(UserRepository)
    where = user_filters(q=q, status=status)
    if isinstance(paging, CursorParams):
        return await users.cursor_page_users(paging, where=where, order=order_by)
    return await users.page_users(paging, where=where, order=order_by)


async def update_user(
    uow: UnitOfWork, *, actor: User, user_id: int, data: UserUpdate, passwords: Passwords
) -> User:
    """Partial update. Self or superuser; status/is_superuser/credits: superusers only.

    A refused request changes nothing: every check runs before the first assignment.
    `credits` sets the balance through the ledger (an `adjustment` row for the difference).
    """
    if not can_manage(actor, user_id):
        raise NotAllowed()
    changes = data.model_dump(exclude_unset=True)
    if PRIVILEGED_FIELDS & changes.keys() and not actor.is_superuser:
        raise PrivilegedField()
    user = await get_user(uow, user_id=user_id)
    users = uow.repo(UserRepository)
    if data.email is not None and data.email != user.email and await users.exists_email(data.email):
        raise EmailTaken()
    if (
        data.username is not None
        and data.username != user.username
        and await users.exists_username(data.username)
    ):
        raise UsernameTaken()
    if data.password is not None:
        user.hashed_password = await _new_password_hash(actor, user, data, passwords)
        user.token_version += 1  # every token issued before, the caller's own included, ends
    if data.credits is not None:
        await set_balance(uow, actor_id=actor.id, user_id=user.id, balance=data.credits)
        # The Core UPDATE bypassed the ORM: reload so the response shows the new balance.
        await uow.session.refresh(user, ["credits"])
    for field in ("email", "username", "full_name", "status", "is_superuser"):
        if field in changes:
            setattr(user, field, getattr(data, field))
    await uow.commit()
    return user


async def _new_password_hash(
    actor: User, user: User, data: UserUpdate, passwords: Passwords
) -> str:
    assert data.password is not None
    # One's own password needs the current one (a stolen token must not be enough to lock
    # the owner out); a superuser resetting someone else's does not.
    if actor.id == user.id:
        if data.current_password is None:
            raise CurrentPasswordRequired()
        ok, _ = await passwords.verify(data.current_password, user.hashed_password)
        if not ok:
            raise WrongPassword()
    return await passwords.hash(data.password)


async def delete_user(uow: UnitOfWork, *, actor: User, user_id: int) -> None:
    """Soft delete: the row stays (its email and username stay taken), hidden from reads."""
    if not can_manage(actor, user_id):
        raise NotAllowed()
    user = await get_user(uow, user_id=user_id)
    await uow.repo(UserRepository).delete(user)
    await uow.commit()


async def get_profile(uow: UnitOfWork, *, user_id: int) -> UserProfile:
    user = await get_user(uow, user_id=user_id)
    if user.profile is None:
        raise ProfileNotFound()
    return user.profile


async def replace_profile(
    uow: UnitOfWork, *, actor: User, user_id: int, data: ProfileUpdate
) -> UserProfile:
    if not can_manage(actor, user_id):
        raise NotAllowed()
    user = await get_user(uow, user_id=user_id)
    profile = user.profile
    if profile is None:  # users made before profiles existed, or by hand
        profile = user.profile = UserProfile()
    profile.bio, profile.avatar_url, profile.location = data.bio, data.avatar_url, data.location
    await uow.commit()
    return profile


class SuperuserOutcome(StrEnum):
    created = "created"
    promoted = "promoted"
    unchanged = "unchanged"


async def ensure_superuser(
    uow: UnitOfWork,
    *,
    email: str,
    username: str,
    password: Callable[[], str],
    passwords: Passwords,
) -> tuple[User, SuperuserOutcome]:
    """Make sure a superuser with this email or username exists (idempotent).

    An existing user is promoted (or left as is); `password()` is asked for only when a new
    user is created, and is validated like a sign-up's. Raises `pydantic.ValidationError`
    for invalid values and `Conflict` when the email and username belong to two users.
    """
    users = uow.repo(UserRepository)
    by_email = await users.get_by_email(email)
    by_username = await users.get_by_username(username)
    if by_email and by_username and by_email.id != by_username.id:
        raise Conflict(f"{email} and {username} belong to two different users")
    existing = by_email or by_username
    if existing is not None:
        if existing.is_superuser:
            return existing, SuperuserOutcome.unchanged
        existing.is_superuser = True
        await uow.commit()
        return existing, SuperuserOutcome.promoted
    data = UserCreate(email=email, username=username, password=password())
    user = User(
        email=data.email,
        username=data.username,
        hashed_password=await passwords.hash(data.password),
        is_superuser=True,
        profile=UserProfile(),
    )
    await users.add(user)
    await uow.commit()
    return user, SuperuserOutcome.created
