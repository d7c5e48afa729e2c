"""Typed errors, and the one place where database exceptions become them.

Every expected failure is an `AppError` subclass with an HTTP `status_code`; nothing here
imports FastAPI (see `agora.db.fastapi` for the handler that renders them).

`translate(exc)` turns a SQLAlchemy/driver exception into the matching typed error on both
PostgreSQL (by SQLSTATE and the driver's `constraint_name`) and SQLite (by its messages, with
the constraint name recovered from the table metadata). A domain maps a *named* constraint to
its own error once, with `on_constraint("uq_user_email", EmailTaken)`; two requests racing past
a pre-check then both get a proper 409 instead of one 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from sqlalchemy import MetaData, UniqueConstraint
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc


class AppError(Exception):
    """Base of every error the API reports on purpose."""

    status_code: ClassVar[int] = 500
    default_detail: ClassVar[str] = "Internal error"
    headers: dict[str, str] | None = None

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = self.default_detail if detail is None else detail
        if headers is not None:
            self.headers = headers
        super().__init__(self.detail)

    @property
    def name(self) -> str:
        return type(self).__name__


class BadRequest(AppError):
    status_code = 400
    default_detail = "Bad request"


class Unauthorized(AppError):
    status_code = 401
    default_detail = "Not authenticated"


class Forbidden(AppError):
    status_code = 403
    default_detail = "Not allowed"


class NotFound(AppError):
    status_code = 404
    default_detail = "Not found"


class Conflict(AppError):
    status_code = 409
    default_detail = "Conflict"


class PreconditionFailed(AppError):
    status_code = 412
    default_detail = "Precondition failed"


class Invalid(AppError):
    status_code = 422
    default_detail = "Invalid input"


class TooManyRequests(AppError):
    status_code = 429
    default_detail = "Too many requests"


class ServiceUnavailable(AppError):
    status_code = 503
    default_detail = "Service temporarily unavailable"

    def __init__(self, detail: Any = None, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


# --- database-specific errors ---------------------------------------------------------------


class IntegrityViolation(Conflict):
    """A constraint refused a write. `constraint` is its name when the database tells it."""

    default_detail = "A constraint refused the change"

    def __init__(
        self,
        detail: Any = None,
        *,
        constraint: str | None = None,
        table: str | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        super().__init__(detail)
        self.constraint = constraint
        self.table = table
        self.fields = fields


class Duplicate(IntegrityViolation):
    default_detail = "A row with the same unique value already exists"


class ForeignKeyViolation(IntegrityViolation):
    default_detail = "The change refers to a row that does not exist, or is still referenced"


class CheckViolation(IntegrityViolation):
    status_code = 422
    default_detail = "A value is outside its allowed range"


class NotNullViolation(IntegrityViolation):
    status_code = 422
    default_detail = "A required value is missing"


class StaleData(Conflict):
    """Optimistic lock: the row changed (or vanished) since it was read."""

    default_detail = "The resource was changed by someone else; reload it and try again"


class InvalidData(Invalid):
    """The database refused a value (a NUL byte in text, an integer out of range, ...)."""

    default_detail = "A value cannot be stored"


class DatabaseUnavailable(ServiceUnavailable):
    default_detail = "The database is unavailable; try again shortly"


class DatabaseTimeout(ServiceUnavailable):
    """A statement ran past `statement_timeout` or waited for a lock past `lock_timeout`
    (PostgreSQL), or a SQLite writer waited for the write lock past the busy timeout.

    503 rather than 504: the service is not a gateway, the database refused to wait any
    longer and rolled the transaction back, and the same `Retry-After` advice as for an
    unreachable database applies.
    """

    default_detail = "The database did not answer in time; try again shortly"


class CommitOutcomeUnknown(DatabaseUnavailable):
    """The connection failed while COMMIT was on its way: the change may or may not be stored.

    Every other database error of a write means nothing was written (COMMIT was never sent,
    or the server answered it with an error); this one alone leaves the outcome open. Retry
    with the same Idempotency-Key (the retry replays the stored response, or does the work
    once), or read before repeating.
    """

    default_detail = (
        "The connection to the database failed during the commit: the change may or may not "
        "have been applied. Retry with the same Idempotency-Key, or check before repeating it"
    )


# --- constraint registry --------------------------------------------------------------------

ErrorFactory = Callable[[IntegrityViolation], AppError]
_constraint_errors: dict[str, ErrorFactory] = {}
_metadatas: list[MetaData] = []


def on_constraint(name: str, error: type[AppError] | ErrorFactory) -> None:
    """Map the constraint called `name` to a domain error (a class or a factory)."""
    if isinstance(error, type):
        cls = error
        _constraint_errors[name] = lambda _v: cls()
    else:
        _constraint_errors[name] = error


def register_metadata(metadata: MetaData) -> None:
    """Let SQLite errors (which name columns, not constraints) be resolved to a name."""
    if metadata not in _metadatas:
        _metadatas.append(metadata)


# --- translation ----------------------------------------------------------------------------

# SQLSTATEs, https://www.postgresql.org/docs/current/errcodes-appendix.html
_PG_CLASSES: dict[str, type[IntegrityViolation]] = {
    "23505": Duplicate,
    "23503": ForeignKeyViolation,
    "23514": CheckViolation,
    "23502": NotNullViolation,
}
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_PG_STATEMENT_TIMEOUT = "57014"  # query_canceled: statement_timeout (or a cancel request)
_PG_LOCK_TIMEOUT = "55P03"  # lock_not_available: lock_timeout, or NOWAIT
_PG_INVALID_DATA_CLASS = "22"  # data exceptions: NUL bytes, out-of-range numbers, ...
_PG_NUMERIC_OUT_OF_RANGE = "22003"
_PG_BAD_CHARACTER = "22021"  # e.g. a NUL byte, which PostgreSQL text cannot hold
_OUT_OF_RANGE = "A number is out of range"
_PG_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "53300", "08000", "08003", "08006"})

_SQLITE_PATTERNS: list[tuple[re.Pattern[str], type[IntegrityViolation]]] = [
    (re.compile(r"UNIQUE constraint failed: (?P<cols>.+)"), Duplicate),
    (re.compile(r"FOREIGN KEY constraint failed"), ForeignKeyViolation),
    (re.compile(r"CHECK constraint failed: (?P<name>\S+)"), CheckViolation),
    (re.compile(r"NOT NULL constraint failed: (?P<cols>.+)"), NotNullViolation),
]


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error wrapped by SQLAlchemy, if any."""
    orig = getattr(exc, "orig", exc)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def is_retryable(exc: BaseException) -> bool:
    """True for serialization failures and deadlocks: re-running the transaction may succeed."""
    return sqlstate(exc) in RETRYABLE_SQLSTATES


@contextmanager
def translating() -> Iterator[None]:
    """Re-raise database exceptions from the block as their typed error.

    Serialization failures and deadlocks pass through untouched so that `retrying` sees them;
    exceptions with no typed counterpart propagate as they are.
    """
    try:
        yield
    except (sa_exc.DBAPIError, orm_exc.StaleDataError, OverflowError) as exc:
        typed = None if is_retryable(exc) else translate(exc)
        if typed is None:
            raise
        raise typed from exc


def translate(exc: BaseException) -> AppError | None:
    """The typed error for a database exception, or None when it is not an expected one."""
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, orm_exc.StaleDataError):
        return StaleData()
    if isinstance(exc, OverflowError) and "too large to convert" in str(exc):
        # sqlite3 refuses integers beyond 64 bits while binding, before any DBAPI error.
        return InvalidData(_OUT_OF_RANGE)
    if isinstance(exc, sa_exc.TimeoutError):  # pool checkout waited past pool_timeout
        return DatabaseUnavailable("All database connections are busy; try again shortly")
    if isinstance(exc, (ConnectionError, OSError, TimeoutError)):
        return DatabaseUnavailable()
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    code = sqlstate(exc)
    if code is not None:
        return _translate_pg(exc, code)
    return _translate_sqlite(exc)


def _translate_pg(exc: sa_exc.DBAPIError, code: str) -> AppError | None:
    cause = getattr(exc.orig, "__cause__", None)
    if code in _PG_CLASSES:
        constraint = getattr(cause, "constraint_name", None)
        table = getattr(cause, "table_name", None)
        column = getattr(cause, "column_name", None)  # set for NOT NULL violations
        fields = _fields_from_detail(getattr(cause, "detail", None)) or (
            (column,) if column else ()
        )
        return _violation(_PG_CLASSES[code], constraint=constraint, table=table, fields=fields)
    if code == _PG_STATEMENT_TIMEOUT:
        return DatabaseTimeout()
    if code == _PG_LOCK_TIMEOUT:
        return DatabaseTimeout(
            "Another transaction holds a lock this request needs; try again shortly"
        )
    if code in _PG_UNAVAILABLE or exc.connection_invalidated:
        return DatabaseUnavailable()
    if code in RETRYABLE_SQLSTATES:
        return DatabaseUnavailable("The database could not serialize this request; retry it")
    if code.startswith(_PG_INVALID_DATA_CLASS):
        return InvalidData(
            _invalid_data_detail(code, getattr(cause, "message", None) or str(exc.orig))
        )
    return None


def _invalid_data_detail(code: str, message: str) -> str:
    # asyncpg checks integer ranges itself while encoding parameters ("value out of int32
    # range", SQLSTATE 22000 on a client-side DataError); the server reports 22003.
    if code == _PG_NUMERIC_OUT_OF_RANGE or "out of int" in message:
        return _OUT_OF_RANGE
    if code == _PG_BAD_CHARACTER and "0x00" in message:
        return "Text must not contain NUL (\\x00) characters"
    return _first_line(message)


def _translate_sqlite(exc: sa_exc.DBAPIError) -> AppError | None:
    message = str(exc.orig)
    if exc.connection_invalidated:
        return DatabaseUnavailable()
    for pattern, cls in _SQLITE_PATTERNS:
        match = pattern.search(message)
        if not match:
            continue
        groups = match.groupdict()
        if "name" in groups:
            return _violation(cls, constraint=groups["name"])
        table, fields = _sqlite_columns(groups.get("cols"))
        constraint = _unique_name(table, fields) if cls is Duplicate else None
        return _violation(cls, constraint=constraint, table=table, fields=fields)
    if isinstance(exc, sa_exc.OperationalError) and "locked" in message:
        return DatabaseTimeout("The database is busy; try again shortly")
    if isinstance(exc, sa_exc.OperationalError) and "unable to open" in message:
        return DatabaseUnavailable()
    if isinstance(exc.orig, OverflowError) or "too large to convert" in message:
        return InvalidData(_OUT_OF_RANGE)
    return None


def _violation(
    cls: type[IntegrityViolation],
    *,
    constraint: str | None,
    table: str | None = None,
    fields: tuple[str, ...] = (),
) -> AppError:
    violation = cls(constraint=constraint, table=table, fields=fields)
    if fields and cls is Duplicate:
        violation.detail = f"{', '.join(fields)} already taken"
    factory = _constraint_errors.get(constraint or "")
    return factory(violation) if factory else violation


def _sqlite_columns(cols: str | None) -> tuple[str | None, tuple[str, ...]]:
    if not cols:
        return None, ()
    parts = [c.strip() for c in cols.split(",")]
    table = parts[0].split(".", 1)[0] if "." in parts[0] else None
    return table, tuple(p.split(".", 1)[-1] for p in parts)


def _unique_name(table: str | None, fields: Iterable[str]) -> str | None:
    wanted = set(fields)
    for metadata in _metadatas:
        tbl = metadata.tables.get(table or "")
        if tbl is None:
            continue
        for constraint in tbl.constraints:
            if (
                isinstance(constraint, UniqueConstraint)
                and set(constraint.columns.keys()) == wanted
            ):
                return str(constraint.name)
        for index in tbl.indexes:
            if index.unique and {c.name for c in index.columns} == wanted:
                return str(index.name)
    return None


_DETAIL_KEY = re.compile(r"Key \((?P<cols>[^)]*)\)")


def _fields_from_detail(detail: str | None) -> tuple[str, ...]:
    match = _DETAIL_KEY.search(detail or "")
    if not match:
        return ()
    return tuple(c.strip().strip('"') for c in match.group("cols").split(","))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "A value cannot be stored"


# --- pagination and filters -----------------------------------------------------------------


class InvalidPagination(Invalid):
    """`limit` or `offset` outside the configured bounds."""

    default_detail = "limit or offset is out of range"


class InvalidCursor(BadRequest):
    """A cursor that was tampered with, truncated, or issued for another listing/ordering."""

    default_detail = "The cursor is invalid or belongs to another listing; start again without it"


class InvalidFilter(Invalid):
    """A filter value that cannot be applied (an empty range, a naive datetime, ...)."""

    default_detail = "A filter value is invalid"


class SearchTooLong(InvalidFilter):
    default_detail = "The search text is too long"
