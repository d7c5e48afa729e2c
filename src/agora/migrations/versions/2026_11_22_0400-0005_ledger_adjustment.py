"""credit_transfer: `adjustment` kind, and a NULL recipient for debit adjustments

A superuser setting a balance (PATCH /api/v1/users/{id} `credits`) is now one ledger row:
`adjustment` from nobody (a credit) or to nobody (a debit). So `to_user_id` becomes
nullable, and `ck_credit_transfer_sender_unless_grant` is replaced by
`ck_credit_transfer_parties_by_kind`, which says which side may be NULL for each kind.

The downgrade refuses while adjustment rows exist: the old schema cannot hold them, and
dropping them would break "replaying the ledger gives the balances".

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 04:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = "kind IN ('transfer', 'grant', 'order_payment', 'order_refund')"
NEW_KINDS = "kind IN ('transfer', 'grant', 'order_payment', 'order_refund', 'adjustment')"
OLD_PARTIES = "(kind = 'grant') = (from_user_id IS NULL)"
NEW_PARTIES = (
    "(kind = 'grant' AND from_user_id IS NULL AND to_user_id IS NOT NULL) "
    "OR (kind = 'adjustment' AND (from_user_id IS NULL) <> (to_user_id IS NULL)) "
    "OR (kind NOT IN ('grant', 'adjustment') "
    "AND from_user_id IS NOT NULL AND to_user_id IS NOT NULL)"
)


def upgrade() -> None:
    with op.batch_alter_table("credit_transfer") as batch_op:
        batch_op.drop_constraint(op.f("ck_credit_transfer_kind_valid"), type_="check")
        batch_op.drop_constraint(op.f("ck_credit_transfer_sender_unless_grant"), type_="check")
        batch_op.alter_column("to_user_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_check_constraint(op.f("ck_credit_transfer_kind_valid"), NEW_KINDS)
        batch_op.create_check_constraint(op.f("ck_credit_transfer_parties_by_kind"), NEW_PARTIES)


def downgrade() -> None:
    adjustments = op.get_bind().scalar(
        sa.text("SELECT COUNT(*) FROM credit_transfer WHERE kind = 'adjustment'")
    )
    if adjustments:
        raise RuntimeError(
            f"{adjustments} adjustment rows in credit_transfer: revision 0004 cannot hold them, "
            "and deleting them would make the ledger disagree with the balances"
        )
    with op.batch_alter_table("credit_transfer") as batch_op:
        batch_op.drop_constraint(op.f("ck_credit_transfer_parties_by_kind"), type_="check")
        batch_op.drop_constraint(op.f("ck_credit_transfer_kind_valid"), type_="check")
        batch_op.alter_column("to_user_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_check_constraint(op.f("ck_credit_transfer_kind_valid"), OLD_KINDS)
        batch_op.create_check_constraint(
            op.f("ck_credit_transfer_sender_unless_grant"), OLD_PARTIES
        )
