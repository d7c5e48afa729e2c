"""Declarative base, column types and mixins.

* `Base` carries a naming convention so every constraint has a stable name: Alembic's
  autogenerate stays quiet, SQLite batch migrations can drop constraints by name, and
  `agora.db.errors` maps a violated constraint to a typed error by that name.
* `UTCDateTime` stores UTC and always hands back timezone-aware datetimes, on SQLite too
  (SQLite has no timezone type; SQLAlchemy would return naive values there).
* `relationship()` defaults to `lazy="raise"`: an implicit load is an error in tests rather
  than a `MissingGreenlet` in production. Load what a response needs with `selectinload`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Integer, MetaData, func
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.orm import relationship as _sa_relationship
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (TIMESTAMPTZ on PostgreSQL)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; attach a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def relationship(*args: Any, lazy: Any = "raise", **kwargs: Any) -> Any:
    """`sqlalchemy.orm.relationship` with `lazy="raise"` as the default loading strategy."""
    return _sa_relationship(*args, lazy=lazy, **kwargs)


class IdMixin:
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class TimestampMixin:
    """`created_at` / `updated_at`, set in Python (no RETURNING or re-select needed)."""

    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, server_default=func.current_timestamp(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.current_timestamp(), nullable=False
    )


class SoftDeleteMixin:
    """Rows are hidden by `deleted_at`; `agora.db` filters them out of every ORM read."""

    deleted_at: Mapped[datetime | None] = mapped_column(default=None, nullable=True)

    @hybrid_property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @is_deleted.inplace.expression
    @classmethod
    def _is_deleted_expression(cls) -> ColumnElement[bool]:
        return cls.deleted_at.is_not(None)


class VersionMixin:
    """Optimistic locking: every UPDATE checks and bumps `version` (SQLAlchemy version_id_col).

    A concurrent writer that loaded an older version gets `StaleDataError`, which
    `agora.db.errors` turns into a 409/412-class `Conflict`.
    """

    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")

    @declared_attr.directive
    def __mapper_args__(self) -> dict[str, Any]:
        return {"version_id_col": self.__table__.c.version}  # type: ignore[attr-defined]
