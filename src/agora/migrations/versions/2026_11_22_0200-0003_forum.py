"""forum: post, tag, post_tag, and full-text search (tsvector + GIN / FTS5 + triggers)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 02:00:00+00:00

Full-text search is the same feature built two ways (see agora.forum.search):

* PostgreSQL: `post.search_vector`, a STORED generated `tsvector` (title weight A, content
  weight B, text search configuration 'simple': lower-casing, no stemming, no stop words,
  the closest match to SQLite's unicode61 tokenizer), and a GIN index on it.
* SQLite: `post_fts`, an FTS5 external-content table over post(title, content), kept in sync
  by the three triggers of https://www.sqlite.org/fts5.html#external_content_tables.
  A later migration that rebuilds `post` in SQLite batch mode (copy and rename) drops the
  triggers with the old table: it must create them again (and run the 'rebuild' command).

The models do not declare either (agora.models.forum); migrations/env.py keeps them out of
autogenerate's comparison.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import agora.db.base

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('simple'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(content, '')), 'B')"
)

SQLITE_FTS = [
    # unicode61 folds case (all of Unicode) and keeps diacritics, as PostgreSQL's 'simple'.
    "CREATE VIRTUAL TABLE post_fts USING fts5("
    "title, content, content='post', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER post_fts_after_insert AFTER INSERT ON post BEGIN "
    "INSERT INTO post_fts(rowid, title, content) VALUES (new.id, new.title, new.content); "
    "END",
    "CREATE TRIGGER post_fts_after_delete AFTER DELETE ON post BEGIN "
    "INSERT INTO post_fts(post_fts, rowid, title, content) "
    "VALUES ('delete', old.id, old.title, old.content); "
    "END",
    # Only when the indexed text changes: soft deletes and version bumps do not reindex.
    "CREATE TRIGGER post_fts_after_update AFTER UPDATE OF title, content ON post BEGIN "
    "INSERT INTO post_fts(post_fts, rowid, title, content) "
    "VALUES ('delete', old.id, old.title, old.content); "
    "INSERT INTO post_fts(rowid, title, content) VALUES (new.id, new.title, new.content); "
    "END",
    # Index rows that already exist (none on a fresh database).
    "INSERT INTO post_fts(post_fts) VALUES ('rebuild')",
]


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            name,
            agora.db.base.UTCDateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        )
        for name in ("created_at", "updated_at")
    ]


def upgrade() -> None:
    op.create_table(
        "tag",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 50", name=op.f("ck_tag_name_length")),
        sa.CheckConstraint("name = lower(name)", name=op.f("ck_tag_name_lower_case")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag")),
        sa.UniqueConstraint("name", name=op.f("uq_tag_name")),
    )
    op.create_table(
        "post",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=220), nullable=False),
        sa.Column("content", sa.Text(), server_default="", nullable=False),
        sa.Column("is_published", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("published_at", agora.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("deleted_at", agora.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint("length(title) BETWEEN 1 AND 200", name=op.f("ck_post_title_length")),
        sa.CheckConstraint("length(content) <= 100000", name=op.f("ck_post_content_length")),
        sa.CheckConstraint(
            "NOT is_published OR published_at IS NOT NULL", name=op.f("ck_post_published_at_set")
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["user.id"], name=op.f("fk_post_author_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_post")),
        sa.UniqueConstraint("slug", name=op.f("uq_post_slug")),
    )
    op.create_index(op.f("ix_post_published_at_id"), "post", ["published_at", "id"])
    op.create_index(op.f("ix_post_created_at_id"), "post", ["created_at", "id"])
    op.create_index(op.f("ix_post_author_id_is_published"), "post", ["author_id", "is_published"])
    op.create_table(
        "post_tag",
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["post_id"], ["post.id"], name=op.f("fk_post_tag_post_id_post"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tag.id"], name=op.f("fk_post_tag_tag_id_tag"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("post_id", "tag_id", name=op.f("pk_post_tag")),
    )
    op.create_index(op.f("ix_post_tag_tag_id"), "post_tag", ["tag_id"])

    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.add_column(
            "post",
            sa.Column(
                "search_vector",
                postgresql.TSVECTOR(),
                sa.Computed(SEARCH_VECTOR_SQL, persisted=True),
                nullable=False,
            ),
        )
        op.create_index("ix_post_search_vector", "post", ["search_vector"], postgresql_using="gin")
    elif dialect == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS post_fts_after_{trigger}")
        op.execute("DROP TABLE IF EXISTS post_fts")  # and its shadow tables
    # PostgreSQL: the search column and its index go with the table.
    op.drop_index(op.f("ix_post_tag_tag_id"), table_name="post_tag")
    op.drop_table("post_tag")
    op.drop_index(op.f("ix_post_author_id_is_published"), table_name="post")
    op.drop_index(op.f("ix_post_created_at_id"), table_name="post")
    op.drop_index(op.f("ix_post_published_at_id"), table_name="post")
    op.drop_table("post")
    op.drop_table("tag")
