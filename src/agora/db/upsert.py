"""`INSERT ... ON CONFLICT` statements for PostgreSQL and SQLite, built from a mapped class.

`upsert_statement(Model, dialect_name=..., keys=..., on=..., update=...)` returns an ORM-enabled
dialect `Insert`:

* `update=None`: on conflict, every given column except the conflict columns is overwritten
  with the proposed value (`excluded.<col>`).
* `update=("a", "b")`: only those columns are overwritten.
* `update=()`: `ON CONFLICT (...) DO NOTHING`.

One statement decides insert-or-update inside the database, so concurrent callers never race
the way select-then-write does. `ON CONFLICT ... DO UPDATE` bypasses the ORM's unit of work, so
what the ORM would do on an UPDATE is added to the SET clause by hand:

* columns with a Python-side `onupdate` (e.g. `TimestampMixin.updated_at`) get its value;
* the mapper's `version_id_col` (e.g. `VersionMixin.version`) is incremented by one (integer
  counters only: a custom `version_id_generator` cannot run inside the database).

See https://docs.sqlalchemy.org/en/20/orm/queryguide/dml.html#orm-upsert-statements
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Column, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapper

UpsertInsert = postgresql.Insert | sqlite.Insert


def upsert_statement(
    model: type[Any],
    *,
    dialect_name: str,
    keys: Collection[str],
    on: Sequence[str],
    update: Sequence[str] | None,
) -> UpsertInsert:
    """The upsert of rows carrying `keys`, conflicting on the unique columns `on`."""
    mapper: Mapper[Any] = inspect(model)
    missing = [key for key in on if key not in keys]
    if missing:
        raise ValueError(f"upsert values lack the conflict column(s) {missing}")
    stmt = _dialect_insert(model, dialect_name)
    targets = [_column(mapper, key) for key in on]
    if update is not None and len(update) == 0:
        return stmt.on_conflict_do_nothing(index_elements=targets)
    return stmt.on_conflict_do_update(
        index_elements=targets, set_=_set_clause(stmt, mapper, keys=keys, on=on, update=update)
    )


def _dialect_insert(model: type[Any], dialect_name: str) -> UpsertInsert:
    if dialect_name == "postgresql":
        return postgresql.insert(model)
    if dialect_name == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"no native upsert for the {dialect_name!r} dialect")


def _set_clause(
    stmt: UpsertInsert,
    mapper: Mapper[Any],
    *,
    keys: Collection[str],
    on: Sequence[str],
    update: Sequence[str] | None,
) -> dict[str, Any]:
    primary = {column.key for column in mapper.primary_key}
    chosen = [k for k in keys if k not in on and k not in primary] if update is None else update
    # Keyed by column key, the form `on_conflict_do_update(set_=...)` expects.
    set_: dict[str, Any] = {}
    for key in chosen:
        column = _column(mapper, key)
        set_[column.key] = stmt.excluded[column.key]
    for table_column in mapper.local_table.columns:
        if table_column.onupdate is not None and table_column.key not in set_:
            set_[table_column.key] = _onupdate_value(table_column)
    version = mapper.version_id_col
    if version is not None and str(version.key) not in set_:
        set_[str(version.key)] = version + 1
    if not set_:
        raise ValueError("upsert has nothing to update: pass update=() for DO NOTHING")
    return set_


def _column(mapper: Mapper[Any], key: str) -> Column[Any]:
    try:
        column = mapper.columns[key]
    except KeyError:
        raise TypeError(f"{mapper.class_.__name__} has no column {key!r}") from None
    assert isinstance(column, Column)  # mapped columns of a declarative table
    return column


def _onupdate_value(column: Any) -> Any:
    default: Any = column.onupdate
    if default.is_callable:
        # SQLAlchemy wraps zero-argument callables as `fn(context)`; there is no execution
        # context here, which context-sensitive onupdate functions would need.
        return default.arg(None)
    return default.arg  # a scalar or a SQL expression
