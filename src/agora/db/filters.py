"""Small, composable WHERE-clause helpers for typed query parameters.

Each helper returns a SQLAlchemy condition, or None when its input was not given, so optional
filters compose without `if`s::

    stmt = select(Article).where(
        *given(
            eq(Article.author_id, author_id),
            one_of(Article.status, statuses),
            between(Article.score, min_score, max_score),
            after(Article.published_at, since),
            contains(Article.title, q),
        )
    )

`contains` is a case-insensitive substring search that treats `%`, `_` and `\\` literally and
folds case the same way on PostgreSQL and SQLite. SQLite's own LIKE and lower() only fold
ASCII letters, so on SQLite the search calls a Python function that each connection must
know: call `enable_sqlite_search(engine)` right after creating a SQLite engine
(`agora.app` does). Forgetting it fails loudly when the statement is compiled.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import String, event, literal
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from agora.db.errors import InvalidFilter, SearchTooLong

T = TypeVar("T")
Column = ColumnElement[T] | QueryableAttribute[T]
Condition = ColumnElement[bool]

MAX_SEARCH_LENGTH = 100
MAX_IN_VALUES = 100
LIKE_ESCAPE = "\\"
SQLITE_LOWER = "agora_lower"  # the Python function registered on SQLite connections
_SQLITE_ENABLED = "_agora_search_enabled"  # flag set on the engine's dialect


def given(*conditions: Condition | None) -> list[Condition]:
    """The conditions that were given (not None), for `stmt.where(*given(...))`."""
    return [c for c in conditions if c is not None]


def eq(column: Column[T], value: T | None) -> Condition | None:
    """`column = value`, or no filter when `value` is None."""
    return None if value is None else column == value


def one_of(
    column: Column[T], values: Collection[T] | None, *, max_values: int = MAX_IN_VALUES
) -> Condition | None:
    """`column IN (values)`; an empty collection matches nothing, None filters nothing."""
    if values is None:
        return None
    if len(values) > max_values:
        raise InvalidFilter(f"at most {max_values} values may be given")
    return column.in_(list(values))


def between(column: Column[T], low: T | None = None, high: T | None = None) -> Condition | None:
    """`low <= column <= high`; either bound may be left out."""
    if low is not None and high is not None and low > high:  # type: ignore[operator]
        raise InvalidFilter("the lower bound is above the upper bound")
    conditions = given(
        None if low is None else column >= low,
        None if high is None else column <= high,
    )
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else conditions[0] & conditions[1]


def before(
    column: Column[datetime | None], moment: datetime | None, *, inclusive: bool = False
) -> Condition | None:
    """Rows whose datetime is before `moment` (an aware datetime)."""
    if moment is None:
        return None
    _require_aware(moment)
    return column <= moment if inclusive else column < moment


def after(
    column: Column[datetime | None], moment: datetime | None, *, inclusive: bool = False
) -> Condition | None:
    """Rows whose datetime is after `moment` (an aware datetime)."""
    if moment is None:
        return None
    _require_aware(moment)
    return column >= moment if inclusive else column > moment


def _require_aware(moment: datetime) -> None:
    # A naive time is ambiguous, and UTCDateTime columns refuse to bind it (a 500 otherwise).
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidFilter("datetimes must include a timezone, e.g. 2026-01-31T12:00:00Z")


def escape_like(text: str, escape: str = LIKE_ESCAPE) -> str:
    """`text` with LIKE's wildcards (and the escape character itself) made literal."""
    return text.replace(escape, escape * 2).replace("%", escape + "%").replace("_", escape + "_")


def contains(
    column: Column[str], text: str | None, *, max_length: int = MAX_SEARCH_LENGTH
) -> Condition | None:
    """Case-insensitive "column contains text", with `%`, `_` and `\\` taken literally.

    Blank text filters nothing; text longer than `max_length` raises `SearchTooLong` (422).
    """
    if text is None or not text.strip():
        return None
    if len(text) > max_length:
        raise SearchTooLong(f"search text is limited to {max_length} characters")
    pattern = literal(f"%{escape_like(text)}%", String())
    return lower(column).like(lower(pattern), escape=LIKE_ESCAPE)


class lower(FunctionElement[str]):  # noqa: N801 - named like the SQL function it renders
    """`lower(x)` with Unicode case folding on every dialect (see `enable_sqlite_search`)."""

    type = String()
    inherit_cache = True


@compiles(lower)
def _lower_default(element: lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(lower, "sqlite")
def _lower_sqlite(element: lower, compiler: SQLCompiler, **kw: Any) -> str:
    if not getattr(compiler.dialect, _SQLITE_ENABLED, False):
        raise CompileError(
            "case-insensitive search on SQLite needs agora.db.filters.enable_sqlite_search(engine)"
        )
    return f"{SQLITE_LOWER}({compiler.process(element.clauses, **kw)})"


def _python_lower(value: object) -> object:
    # str.lower (not casefold) matches PostgreSQL's lower() in a UTF-8 locale: 'ß' stays 'ß'.
    return value.lower() if isinstance(value, str) else value


def enable_sqlite_search(engine: AsyncEngine) -> None:
    """Register `agora_lower` on every connection of a SQLite engine (no-op elsewhere).

    `agora.db.engine.make_engine` does this for every SQLite engine it builds; call it
    yourself only for an engine made another way, before it opens its first connection
    (connections already pooled are not touched).
    """
    if engine.dialect.name != "sqlite" or getattr(engine.dialect, _SQLITE_ENABLED, False):
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _register(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function(SQLITE_LOWER, 1, _python_lower, deterministic=True)

    setattr(engine.dialect, _SQLITE_ENABLED, True)
