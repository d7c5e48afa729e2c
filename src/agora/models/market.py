"""Market: products, orders and their lines, the credit ledger and idempotency keys.

Money columns are integer cents (see `agora.money`). Stock and balances never go negative:
the services change them with guarded single statements or under row locks, and CHECK
constraints stand behind them as a backstop.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from agora.db.base import (
    Base,
    IdMixin,
    SoftDeleteMixin,
    TimestampMixin,
    VersionMixin,
    relationship,
    utcnow,
)

PRODUCT_NAME_MAX = 200
PRODUCT_DESCRIPTION_MAX = 10_000
CATEGORY_MAX = 50
NOTE_MAX = 500
IDEMPOTENCY_KEY_MIN, IDEMPOTENCY_KEY_MAX = 8, 255
QUANTITY_MAX = 1000
ORDER_LINES_MAX = 50
# A price is at most 100 000 000.00: 50 lines x 1000 units of it stay far inside BIGINT.
PRICE_MAX_CENTS = 10**10

# Indexes that exist only on one dialect and live in the migrations alone (the models cannot
# describe them for both databases). `agora.migrations.env` leaves them out of `db check`.
MIGRATION_ONLY_INDEXES = frozenset({"ix_product_name_trgm"})


def _enum(cls: type[StrEnum]) -> Enum:
    # VARCHAR + named CHECK, like `user.status`: the same on both databases.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda e: [m.value for m in e],
    )


def _in(cls: type[StrEnum], column: str) -> str:
    return f"{column} IN ({', '.join(repr(m.value) for m in cls)})"


class Product(IdMixin, TimestampMixin, SoftDeleteMixin, VersionMixin, Base):
    __tablename__ = "product"

    seller_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    name: Mapped[str] = mapped_column(String(PRODUCT_NAME_MAX))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    category: Mapped[str] = mapped_column(String(CATEGORY_MAX), index=True)
    price: Mapped[int] = mapped_column(BigInteger, index=True)  # cents
    stock: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    __table_args__ = (
        CheckConstraint(f"price > 0 AND price <= {PRICE_MAX_CENTS}", name="price_range"),
        CheckConstraint("stock >= 0", name="stock_nonnegative"),
        CheckConstraint(f"length(name) BETWEEN 1 AND {PRODUCT_NAME_MAX}", name="name_length"),
        Index("ix_product_created_at_id", "created_at", "id"),
    )


class OrderStatus(StrEnum):
    pending = "pending"
    paid = "paid"
    cancelled = "cancelled"


class Order(IdMixin, TimestampMixin, Base):
    __tablename__ = "order"

    buyer_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    status: Mapped[OrderStatus] = mapped_column(
        _enum(OrderStatus), default=OrderStatus.pending, server_default=OrderStatus.pending.value
    )
    total: Mapped[int] = mapped_column(BigInteger)  # cents, computed by the server
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)

    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderItem.id"
    )

    __table_args__ = (
        CheckConstraint(_in(OrderStatus, "status"), name="status_valid"),
        CheckConstraint("total >= 0", name="total_nonnegative"),
    )


class OrderItem(IdMixin, Base):
    """One line of an order, with the product's name, seller and price as they were."""

    __tablename__ = "order_item"

    order_id: Mapped[int] = mapped_column(ForeignKey("order.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"), index=True)
    seller_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    name: Mapped[str] = mapped_column(String(PRODUCT_NAME_MAX))
    unit_price: Mapped[int] = mapped_column(BigInteger)  # cents
    quantity: Mapped[int] = mapped_column(Integer)

    order: Mapped[Order] = relationship(back_populates="items")

    __table_args__ = (
        CheckConstraint(f"quantity BETWEEN 1 AND {QUANTITY_MAX}", name="quantity_range"),
        CheckConstraint("unit_price > 0", name="unit_price_positive"),
    )

    @property
    def line_total(self) -> int:
        return self.unit_price * self.quantity


class TransferKind(StrEnum):
    transfer = "transfer"  # member to member
    grant = "grant"  # minted by a superuser (no sender)
    order_payment = "order_payment"  # buyer to seller
    order_refund = "order_refund"  # seller back to buyer
    # A superuser setting a balance: credited from outside (no sender) or debited to outside
    # (no recipient). NULL is "outside" on either side, so replay stays one rule.
    adjustment = "adjustment"


# Who may be NULL: a grant has no sender, an adjustment exactly one NULL side, the others none.
PARTIES_BY_KIND = (
    "(kind = 'grant' AND from_user_id IS NULL AND to_user_id IS NOT NULL) "
    "OR (kind = 'adjustment' AND (from_user_id IS NULL) <> (to_user_id IS NULL)) "
    "OR (kind NOT IN ('grant', 'adjustment') "
    "AND from_user_id IS NOT NULL AND to_user_id IS NOT NULL)"
)


class CreditTransfer(IdMixin, Base):
    """The credit ledger: every change of a balance is one row, written in the same
    transaction as the change. Replaying it from zero gives every balance: each row adds
    `amount` to `to_user_id` and takes it from `from_user_id`, a NULL side being outside the
    ledger (a grant's or credit adjustment's sender, a debit adjustment's recipient)."""

    __tablename__ = "credit_transfer"

    kind: Mapped[TransferKind] = mapped_column(_enum(TransferKind))
    from_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    to_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # cents
    note: Mapped[str] = mapped_column(String(NOTE_MAX), default="", server_default="")
    order_id: Mapped[int | None] = mapped_column(ForeignKey("order.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint(_in(TransferKind, "kind"), name="kind_valid"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "from_user_id IS NULL OR from_user_id <> to_user_id", name="not_to_oneself"
        ),
        CheckConstraint(PARTIES_BY_KIND, name="parties_by_kind"),
    )


class IdempotencyKey(IdMixin, Base):
    """A client's `Idempotency-Key`, claimed in the transaction that does the work.

    The row is inserted with `ON CONFLICT DO NOTHING` first, and the response is stored in it
    before that transaction commits: a committed key always has its response. A request that
    fails changes nothing, so it does not hold the key either.
    """

    __tablename__ = "idempotency_key"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(40))  # which endpoint, e.g. "orders"
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical body
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    response_body: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("user_id", "scope", "key"),)
