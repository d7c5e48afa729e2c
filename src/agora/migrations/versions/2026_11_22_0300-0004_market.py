"""market: product, order, order_item, credit_transfer, idempotency_key

On PostgreSQL also the pg_trgm extension and a trigram index on lower(product.name), which
serves the case-insensitive `contains` search of agora.db.filters. The index is left out of
the models (see agora.models.market.MIGRATION_ONLY_INDEXES); SQLite searches with LIKE.

Independent of the forum tables: only `user` is referenced.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 03:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agora.db.base

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = agora.db.base.UTCDateTime(timezone=True)


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(name, UTC, server_default=sa.func.current_timestamp(), nullable=False)
        for name in ("created_at", "updated_at")
    ]


def _enum(*values: str, name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=False, length=20)


def _indexes(table: str, *columns: str) -> None:
    with op.batch_alter_table(table) as batch_op:
        for column in columns:
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def upgrade() -> None:
    op.create_table(
        "product",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seller_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("category", sa.String(length=50), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("stock", sa.Integer(), server_default="0", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        *_timestamps(),
        sa.Column("deleted_at", UTC, nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 200", name=op.f("ck_product_name_length")),
        sa.CheckConstraint(
            "price > 0 AND price <= 10000000000", name=op.f("ck_product_price_range")
        ),
        sa.CheckConstraint("stock >= 0", name=op.f("ck_product_stock_nonnegative")),
        sa.ForeignKeyConstraint(["seller_id"], ["user.id"], name=op.f("fk_product_seller_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product")),
    )
    _indexes("product", "category", "price", "seller_id")
    with op.batch_alter_table("product") as batch_op:
        batch_op.create_index("ix_product_created_at_id", ["created_at", "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_product_name_trgm ON product USING gin (lower(name) gin_trgm_ops)"
        )

    op.create_table(
        "order",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("buyer_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            _enum("pending", "paid", "cancelled", name="orderstatus"),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", UTC, nullable=True),
        sa.Column("cancelled_at", UTC, nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'cancelled')", name=op.f("ck_order_status_valid")
        ),
        sa.CheckConstraint("total >= 0", name=op.f("ck_order_total_nonnegative")),
        sa.ForeignKeyConstraint(["buyer_id"], ["user.id"], name=op.f("fk_order_buyer_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order")),
    )
    _indexes("order", "buyer_id")

    op.create_table(
        "order_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("seller_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "quantity BETWEEN 1 AND 1000", name=op.f("ck_order_item_quantity_range")
        ),
        sa.CheckConstraint("unit_price > 0", name=op.f("ck_order_item_unit_price_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["order.id"],
            name=op.f("fk_order_item_order_id_order"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["product.id"], name=op.f("fk_order_item_product_id_product")
        ),
        sa.ForeignKeyConstraint(
            ["seller_id"], ["user.id"], name=op.f("fk_order_item_seller_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_item")),
    )
    _indexes("order_item", "order_id", "product_id")

    op.create_table(
        "credit_transfer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            _enum("transfer", "grant", "order_payment", "order_refund", name="transferkind"),
            nullable=False,
        ),
        sa.Column("from_user_id", sa.Integer(), nullable=True),
        sa.Column("to_user_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(length=500), server_default="", nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint(
            "kind IN ('transfer', 'grant', 'order_payment', 'order_refund')",
            name=op.f("ck_credit_transfer_kind_valid"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_credit_transfer_amount_positive")),
        sa.CheckConstraint(
            "from_user_id IS NULL OR from_user_id <> to_user_id",
            name=op.f("ck_credit_transfer_not_to_oneself"),
        ),
        sa.CheckConstraint(
            "(kind = 'grant') = (from_user_id IS NULL)",
            name=op.f("ck_credit_transfer_sender_unless_grant"),
        ),
        sa.ForeignKeyConstraint(
            ["from_user_id"], ["user.id"], name=op.f("fk_credit_transfer_from_user_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["to_user_id"], ["user.id"], name=op.f("fk_credit_transfer_to_user_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["order.id"], name=op.f("fk_credit_transfer_order_id_order")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_transfer")),
    )
    _indexes("credit_transfer", "from_user_id", "to_user_id", "order_id")

    op.create_table(
        "idempotency_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_idempotency_key_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_key")),
        sa.UniqueConstraint(
            "user_id", "scope", "key", name=op.f("uq_idempotency_key_user_id_scope_key")
        ),
    )


def downgrade() -> None:
    op.drop_table("idempotency_key")
    op.drop_table("credit_transfer")  # its indexes go with it
    op.drop_table("order_item")
    op.drop_table("order")
    # The trigram index goes with the table; pg_trgm stays: other schemas may use it.
    op.drop_table("product")
