"""Offset pagination and text search for the users list: a stop-gap.

The shared `agora.db.pagination` (offset `Page[T]` and signed keyset cursors) and
`agora.db.filters` are being built in parallel; when they land, this module is replaced by
them and the users list gains cursor pagination. Nothing else in `agora.members` depends on
how this works inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

T = TypeVar("T")
M = TypeVar("M")


class OffsetPage(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int
    has_more: bool


def contains_ci(column: Any, text: str) -> ColumnElement[bool]:
    """Case-insensitive "contains" in which `%`, `_` and `\\` match themselves.

    `autoescape` escapes the LIKE wildcards and the escape character itself, see
    https://docs.sqlalchemy.org/en/20/core/sqlelement.html#sqlalchemy.sql.expression.ColumnOperators.icontains
    """
    result: ColumnElement[bool] = column.icontains(text, autoescape=True)
    return result


async def fetch_page(
    session: AsyncSession, stmt: Select[M], *, offset: int, limit: int
) -> tuple[Sequence[M], int]:
    """One page of `stmt` (already ordered) and the total count of its rows."""
    total = await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = (await session.scalars(stmt.offset(offset).limit(limit))).all()
    return rows, int(total or 0)
