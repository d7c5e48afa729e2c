"""user.token_version: a password change revokes the access tokens issued before it

Every access token carries the user's `token_version` (claim `ver`; tokens issued before this
revision have none and count as 0) and every authenticated request compares it with the
row. Changing the password increments it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Both directions are native ALTERs on both databases (SQLite has had DROP COLUMN since 3.35):
# batch mode's copy-and-move of `user` would drop a table that every other table references.


def upgrade() -> None:
    op.add_column(
        "user", sa.Column("token_version", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute('ALTER TABLE "user" DROP COLUMN token_version')
    else:
        op.drop_column("user", "token_version")
