"""Soft delete that every ORM read respects.

`install_soft_delete()` registers one `do_orm_execute` listener on the `Session` class (so on
every session in the process, whichever factory made it). For each ORM SELECT it adds
`with_loader_criteria(SoftDeleteMixin, deleted_at IS NULL)`: rows of any model using
`SoftDeleteMixin` disappear from `select()`, `session.get()`, counts, joins, aliases and, because
the option propagates to loaders, from `selectinload` / `joinedload` relationship loads too.
Models without the mixin are not touched, nor are Core statements written against tables
(`select(table.c.title)`): loader criteria are an ORM feature, so such a statement (the form
the hottest read paths use) says its own `deleted_at IS NULL`.

Opt out per statement with the execution option `include_deleted=True`:

    await session.scalars(select(Author).execution_options(include_deleted=True))

The opt-out covers the statement's eager loads as well. Refreshes and loads of expired or
deferred columns of an object already in hand are left alone: the object exists, and a
soft-deleted object must stay refreshable.

The recipe is SQLAlchemy's "Adding global WHERE / ON criteria":
https://docs.sqlalchemy.org/en/20/orm/session_events.html#adding-global-where-on-criteria
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.sql.elements import ColumnElement

from agora.db.base import SoftDeleteMixin

INCLUDE_DELETED: Final = "include_deleted"


def _not_deleted(cls: Any) -> ColumnElement[bool]:
    # Module-level (not a lambda defined per call) so the criteria's cache key is stable.
    return cls.deleted_at.is_(None)  # type: ignore[no-any-return]


# One option object serves every statement (building one per execution costs ~6 µs).
_HIDE_DELETED: Final = with_loader_criteria(SoftDeleteMixin, _not_deleted, include_aliases=True)


def _hide_soft_deleted(state: ORMExecuteState) -> None:
    # Unlike SQLAlchemy's recipe, relationship loads are filtered here too: the criteria only
    # travel with objects that came from a filtered SELECT, not with objects that were just
    # added or returned by INSERT ... RETURNING. Eager loads inherit the statement's
    # execution options, so `include_deleted=True` still reaches them.
    if (
        not state.is_select
        # A Core statement (tables, not mapped classes) gets no ORM loader criteria anyway:
        # it says its own WHERE. Skipping it keeps hot Core reads free of the option's cost.
        or not state.is_orm_statement
        # Refresh / expired-attribute loads act on an object the caller already holds.
        or state.is_column_load
        or state.execution_options.get(INCLUDE_DELETED, False)
    ):
        return
    state.statement = state.statement.options(_HIDE_DELETED)


def install_soft_delete() -> None:
    """Hide soft-deleted rows from every ORM read of every `Session` (idempotent)."""
    if not event.contains(Session, "do_orm_execute", _hide_soft_deleted):
        event.listen(Session, "do_orm_execute", _hide_soft_deleted)


def soft_delete_installed() -> bool:
    return event.contains(Session, "do_orm_execute", _hide_soft_deleted)
