"""Forum: `Post`, `Tag` and the `post_tag` association.

Full-text search needs schema the ORM does not model, created by migration 0003 only:

* PostgreSQL: `post.search_vector`, a generated (STORED) `tsvector` over the title (weight
  A) and the content (weight B), with the GIN index `ix_post_search_vector`;
* SQLite: `post_fts`, an FTS5 external-content table over post(title, content) kept in sync
  by triggers.

Neither exists on the other database, and the ORM never reads or writes them (queries name
them in `agora.forum.search`), so they stay out of the models: `MIGRATION_ONLY` lists them
and `migrations/env.py` tells autogenerate (`agora db check`) to leave them alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from agora.db.base import (
    Base,
    IdMixin,
    SoftDeleteMixin,
    TimestampMixin,
    VersionMixin,
    relationship,
)

if TYPE_CHECKING:
    from agora.models.user import User

TITLE_MAX = 200
SLUG_MAX = 220  # a 200-character title's slug, plus room for "-<n>"
CONTENT_MAX = 100_000
TAG_MAX = 50

SEARCH_VECTOR = "search_vector"
SEARCH_INDEX = "ix_post_search_vector"
FTS_TABLE = "post_fts"
# Schema objects made by migration 0003 and not by the models (see the module docstring):
# FTS5 also creates shadow tables named after its table.
MIGRATION_ONLY_COLUMNS = frozenset({("post", SEARCH_VECTOR)})
MIGRATION_ONLY_INDEXES = frozenset({SEARCH_INDEX})
MIGRATION_ONLY_TABLE_PREFIX = FTS_TABLE

post_tag = Table(
    "post_tag",
    Base.metadata,
    Column("post_id", ForeignKey("post.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Tag(IdMixin, Base):
    __tablename__ = "tag"

    name: Mapped[str] = mapped_column(String(TAG_MAX), unique=True)  # lower case

    __table_args__ = (
        CheckConstraint(f"length(name) BETWEEN 1 AND {TAG_MAX}", name="name_length"),
        CheckConstraint("name = lower(name)", name="name_lower_case"),
    )


class Post(IdMixin, TimestampMixin, SoftDeleteMixin, VersionMixin, Base):
    __tablename__ = "post"

    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    slug: Mapped[str] = mapped_column(String(SLUG_MAX), unique=True)
    content: Mapped[str] = mapped_column(Text, default="", server_default="")
    is_published: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    author_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))

    # A soft-deleted author loads as None (agora.db hides deleted rows from every load).
    author: Mapped[User] = relationship()
    tags: Mapped[list[Tag]] = relationship(secondary=post_tag, order_by=Tag.name)

    __table_args__ = (
        CheckConstraint(f"length(title) BETWEEN 1 AND {TITLE_MAX}", name="title_length"),
        CheckConstraint(f"length(content) <= {CONTENT_MAX}", name="content_length"),
        CheckConstraint("NOT is_published OR published_at IS NOT NULL", name="published_at_set"),
        # The listing orders (newest first by publication or creation, id as tie-breaker;
        # scanned backwards) and "an author's posts, published or not".
        Index(None, "published_at", "id"),
        Index(None, "created_at", "id"),
        Index(None, "author_id", "is_published"),
    )
