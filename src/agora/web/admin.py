"""`/admin`: SQLAdmin views over the models, for superusers only.

What the admin may change is narrower than what it may see:

* password hashes are never listed, shown, exported or editable;
* balances and the ledger are read-only: `user.credits` is not in any form, and credit
  transfers, orders and order lines (money records written by the services together with
  stock and balances) cannot be created, edited or deleted here;
* rows that need the services' rules to be created (users, posts, products, profiles) are
  not created here, and soft-deletable rows are not deleted here (a SQL DELETE would bypass
  the soft delete): the API does both.

The global soft-delete hook (`agora.db.softdelete`) hides deleted rows from every ORM read,
SQLAdmin's included: the admin lists and shows live rows only.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fastapi import FastAPI
from sqladmin import Admin, ModelView
from sqladmin.authentication import AuthenticationBackend
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from agora.config import Environment, Settings
from agora.db.session import Database
from agora.members.deps import Members
from agora.members.errors import TooManyLoginAttempts
from agora.members.repository import UserRepository
from agora.models import (
    CreditTransfer,
    Order,
    OrderItem,
    Post,
    Product,
    Tag,
    User,
    UserProfile,
)

ADMIN_PATH = "/admin"
SESSION_COOKIE = "agora_admin"
SESSION_MAX_AGE = 8 * 60 * 60  # seconds: a working day


class AppSessions(async_sessionmaker[AsyncSession]):
    """A session factory that resolves `app.state.db` when a session is opened.

    SQLAdmin wants a session maker when it is built, in `create_app`, but the engine is
    created later, in the lifespan (or passed in by tests). Each call opens a session of the
    application's read-write factory, so the admin shares its pool and its test isolation.
    """

    def __init__(self, app: FastAPI) -> None:
        super().__init__(class_=AsyncSession)  # `class_` tells SQLAdmin it is async
        self._app = app

    def __call__(self, **local_kw: Any) -> AsyncSession:
        db: Database = self._app.state.db
        return db.sessionmaker(**{"autoflush": False, **local_kw})


def _members(request: Request) -> Members:
    members: Members = request.app.state.agora_members
    return members


def _db(request: Request) -> Database:
    db: Database = request.app.state.agora_app.state.db
    return db


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class SuperuserAuth(AuthenticationBackend):
    """Log in with a superuser's username or email and password; remember the id signed in
    a session cookie. Every request checks that the user is still an active superuser."""

    async def login(self, request: Request) -> bool:
        form = await request.form()
        login, password = form.get("username"), form.get("password")
        if not isinstance(login, str) or not isinstance(password, str) or not login:
            return False
        user_id = await self._check(request, login.strip(), password)
        if user_id is None:
            return False
        request.session.clear()
        request.session["user_id"] = user_id
        return True

    async def _check(self, request: Request, login: str, password: str) -> int | None:
        members = _members(request)
        try:
            await members.login_limiter.hit_address(_address(request))
            await members.login_limiter.hit_account(f"admin:{login.lower()}")
        except TooManyLoginAttempts:
            return None
        async with _db(request).uow(read_only=True) as uow:
            user = await uow.repo(UserRepository).get_by_login(login)
            found = None if user is None else (user.id, user.hashed_password, user.is_superuser)
        if found is None:  # same time as a wrong password: do not reveal who exists
            await members.passwords.verify_dummy(password)
            return None
        user_id, hashed, is_superuser = found
        ok, _ = await members.passwords.verify(password, hashed)  # in a worker thread
        if not ok or not is_superuser or not await self._allowed(request, user_id):
            return None
        return user_id

    async def _allowed(self, request: Request, user_id: object) -> bool:
        if not isinstance(user_id, int):
            return False
        async with _db(request).uow(read_only=True) as uow:
            user = await uow.repo(UserRepository).get(user_id)
            return user is not None and user.is_active and user.is_superuser

    async def logout(self, request: Request) -> bool:
        request.session.clear()
        return True

    async def authenticate(self, request: Request) -> bool:
        # A demoted, suspended or deleted superuser loses the admin at the next request.
        return await self._allowed(request, request.session.get("user_id"))


_TIMESTAMPS = ("created_at", "updated_at", "deleted_at")


class UserAdmin(ModelView, model=User):
    name_plural = "Users"
    icon = "fa-solid fa-user"
    column_list = [
        User.id,
        User.username,
        User.email,
        User.full_name,
        User.status,
        User.is_superuser,
        User.credits,
        User.created_at,
    ]
    column_details_exclude_list = [User.hashed_password, User.profile]
    column_export_exclude_list = [User.hashed_password]
    column_searchable_list = [User.username, User.email, User.full_name]
    column_sortable_list = [User.id, User.username, User.email, User.credits, User.created_at]
    column_default_sort = [(User.id, False)]
    form_columns = [User.email, User.username, User.full_name, User.status, User.is_superuser]
    can_create = False  # sign-up and `agora users create-superuser` hash the password
    can_delete = False  # soft delete through the API


class ProfileAdmin(ModelView, model=UserProfile):
    name = "Profile"
    icon = "fa-solid fa-id-card"
    column_list = [UserProfile.id, UserProfile.user_id, UserProfile.location, UserProfile.bio]
    column_details_exclude_list = [UserProfile.user]
    column_searchable_list = [UserProfile.location, UserProfile.bio]
    column_sortable_list = [UserProfile.id, UserProfile.user_id, UserProfile.location]
    form_columns = [UserProfile.bio, UserProfile.avatar_url, UserProfile.location]
    can_create = False  # one per user, made at sign-up
    can_delete = False


class PostAdmin(ModelView, model=Post):
    icon = "fa-solid fa-newspaper"
    column_list = [
        Post.id,
        Post.title,
        Post.slug,
        Post.author_id,
        Post.is_published,
        Post.published_at,
        Post.created_at,
    ]
    column_details_exclude_list = [Post.author, Post.tags]
    column_searchable_list = [Post.title, Post.slug]
    column_sortable_list = [Post.id, Post.title, Post.published_at, Post.created_at]
    column_default_sort = [(Post.id, True)]
    form_columns = [Post.title, Post.content]
    can_create = False  # slugs, tags and authors come from the forum service
    can_delete = False


class TagAdmin(ModelView, model=Tag):
    icon = "fa-solid fa-tag"
    column_list = [Tag.id, Tag.name]
    column_searchable_list = [Tag.name]
    column_sortable_list = [Tag.id, Tag.name]
    form_columns = [Tag.name]


class ProductAdmin(ModelView, model=Product):
    icon = "fa-solid fa-box"
    column_list = [
        Product.id,
        Product.name,
        Product.category,
        Product.price,
        Product.stock,
        Product.is_active,
        Product.seller_id,
        Product.created_at,
    ]
    column_labels = {Product.price: "price (cents)"}
    column_searchable_list = [Product.name, Product.category]
    column_sortable_list = [Product.id, Product.name, Product.price, Product.stock]
    column_default_sort = [(Product.id, True)]
    form_columns = [
        Product.name,
        Product.description,
        Product.category,
        Product.price,
        Product.stock,
        Product.is_active,
    ]
    can_create = False  # the seller is the caller of the API
    can_delete = False


class _ReadOnly(ModelView):
    can_create = False
    can_edit = False
    can_delete = False


class OrderAdmin(_ReadOnly, model=Order):
    icon = "fa-solid fa-cart-shopping"
    column_list = [Order.id, Order.buyer_id, Order.status, Order.total, Order.created_at]
    column_details_exclude_list = [Order.items]
    column_labels = {Order.total: "total (cents)"}
    column_searchable_list = [Order.status]
    column_sortable_list = [Order.id, Order.buyer_id, Order.status, Order.total, Order.created_at]
    column_default_sort = [(Order.id, True)]


class OrderItemAdmin(_ReadOnly, model=OrderItem):
    name = "Order item"
    icon = "fa-solid fa-list"
    column_list = [
        OrderItem.id,
        OrderItem.order_id,
        OrderItem.product_id,
        OrderItem.name,
        OrderItem.unit_price,
        OrderItem.quantity,
    ]
    column_details_exclude_list = [OrderItem.order]
    column_labels = {OrderItem.unit_price: "unit price (cents)"}
    column_searchable_list = [OrderItem.name]
    column_sortable_list = [OrderItem.id, OrderItem.order_id, OrderItem.unit_price]
    column_default_sort = [(OrderItem.id, True)]


class CreditTransferAdmin(_ReadOnly, model=CreditTransfer):
    name = "Credit transfer"
    icon = "fa-solid fa-coins"
    column_list = [
        CreditTransfer.id,
        CreditTransfer.kind,
        CreditTransfer.from_user_id,
        CreditTransfer.to_user_id,
        CreditTransfer.amount,
        CreditTransfer.order_id,
        CreditTransfer.note,
        CreditTransfer.created_at,
    ]
    column_labels = {CreditTransfer.amount: "amount (cents)"}
    column_searchable_list = [CreditTransfer.kind, CreditTransfer.note]
    column_sortable_list = [
        CreditTransfer.id,
        CreditTransfer.kind,
        CreditTransfer.amount,
        CreditTransfer.created_at,
    ]
    column_default_sort = [(CreditTransfer.id, True)]


VIEWS: tuple[type[ModelView], ...] = (
    UserAdmin,
    ProfileAdmin,
    PostAdmin,
    TagAdmin,
    ProductAdmin,
    OrderAdmin,
    OrderItemAdmin,
    CreditTransferAdmin,
)


def session_secret(settings: Settings) -> str:
    """The cookie-signing key: derived from AGORA_SECRET_KEY for this purpose only, so a
    value signed for the admin session is never valid as a token or a cursor."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, b"agora/admin-session", hashlib.sha256).hexdigest()


def install_admin(app: FastAPI, settings: Settings, members: Members) -> Admin:
    auth = SuperuserAuth(
        secret_key=session_secret(settings),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE,
        path=ADMIN_PATH,
        same_site="lax",  # the admin's forms are not posted from other sites
        https_only=settings.env is Environment.production,
    )
    admin = Admin(
        app,
        session_maker=AppSessions(app),
        base_url=ADMIN_PATH,
        title="Agora admin",
        authentication_backend=auth,
    )
    # The admin runs as a sub-application: give it what its login needs.
    admin.admin.state.agora_app = app
    admin.admin.state.agora_members = members
    for view in VIEWS:
        admin.add_view(view)
    return admin
