"""Models used only by the `agora.db` tests: the toolkit knows nothing of Agora's domains.

They live on their own `MetaData` and are created with `create_all` in a separate database
per backend (see tests/db/conftest.py), so they never show up as drift in `agora db check`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    MetaData,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from agora.db.base import (
    NAMING_CONVENTION,
    IdMixin,
    SoftDeleteMixin,
    TimestampMixin,
    UTCDateTime,
    VersionMixin,
    relationship,
)


class ToolkitBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Author(IdMixin, TimestampMixin, SoftDeleteMixin, ToolkitBase):
    __tablename__ = "author"

    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200), unique=True)
    karma: Mapped[int] = mapped_column(default=0)

    articles: Mapped[list[Article]] = relationship(back_populates="author")

    __table_args__ = (CheckConstraint("karma >= 0", name="karma_nonnegative"),)


class Article(IdMixin, TimestampMixin, SoftDeleteMixin, VersionMixin, ToolkitBase):
    __tablename__ = "article"

    title: Mapped[str] = mapped_column(String(200))
    score: Mapped[int] = mapped_column(default=0)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id", ondelete="CASCADE"))

    author: Mapped[Author] = relationship(back_populates="articles")


class Counter(IdMixin, ToolkitBase):
    """Upsert target: one row per (namespace, key)."""

    __tablename__ = "counter"

    namespace: Mapped[str] = mapped_column(String(50))
    key: Mapped[str] = mapped_column(String(100))
    value: Mapped[int] = mapped_column(default=0)
    label: Mapped[str | None] = mapped_column(String(100), default=None)

    __table_args__ = (UniqueConstraint("namespace", "key"),)


class Setting(TimestampMixin, ToolkitBase):
    """Composite primary key, no soft delete: a key-value store per scope."""

    __tablename__ = "setting"

    scope: Mapped[str] = mapped_column(String(50), primary_key=True)
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class Reading(IdMixin, ToolkitBase):
    """A BIGINT column, for out-of-range integers."""

    __tablename__ = "reading"

    amount: Mapped[int] = mapped_column(BigInteger)


class TicketStatus(enum.StrEnum):
    open = "open"
    closed = "closed"


class Ticket(IdMixin, SoftDeleteMixin, ToolkitBase):
    """Columns whose values SQLAlchemy converts (an enum, a decimal, an aware datetime), for
    `Prepared`, which must return what a session returns."""

    __tablename__ = "ticket"

    title: Mapped[str] = mapped_column(String(100))
    status: Mapped[TicketStatus] = mapped_column(Enum(TicketStatus, name="ticket_status"))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    due_at: Mapped[datetime | None] = mapped_column(default=None)
