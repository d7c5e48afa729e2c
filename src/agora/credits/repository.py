"""Balances and the ledger. Balances change only through `AccountRepository.apply`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agora.db.base import utcnow
from agora.db.pagination import CursorPage, CursorParams
from agora.db.prepared import Prepared
from agora.db.repository import Repository
from agora.models.market import CreditTransfer, TransferKind
from agora.models.user import User

# Far inside BIGINT, so `credits + delta` never overflows in the database.
MAX_BALANCE_CENTS = 10**18

# The statements of a transfer are built once, as Core statements on the tables, and run with
# bound parameters. Building them per call with ORM attributes (`User.credits + delta`, ...)
# and running them through the ORM's bulk-update and unit-of-work machinery cost more CPU
# than the rest of a transfer request together (bench/README.md, "credit transfers").
# They filter soft-deleted rows themselves, so the soft-delete hook is told to stay out
# (`include_deleted`): its criteria would only add a second `deleted_at IS NULL`.
_user = User.metadata.tables[User.__tablename__]
_ledger = CreditTransfer.metadata.tables[CreditTransfer.__tablename__]
# What `LedgerRepository.record` writes (the id is the database's; `order_id` stays NULL).
_RECORDED = [_ledger.c[name] for name in ("kind", "from_user_id", "to_user_id", "amount",
                                          "note", "created_at")]  # fmt: skip
_delta = bindparam("delta", type_=BigInteger)
_new_balance = _user.c.credits + _delta
# `Prepared`: run on the unit of work's connection, in its transaction, without SQLAlchemy's
# per-execution layers (`agora.db.prepared`); the timestamps SQLAlchemy would fill in from
# the columns' Python defaults (`updated_at`'s onupdate, `created_at`'s default) are given.
_APPLY = Prepared(
    update(_user)
    .where(
        _user.c.id == bindparam("user_id", type_=Integer),
        _new_balance >= 0,
        _new_balance <= MAX_BALANCE_CENTS,
    )
    .values(credits=_new_balance, updated_at=bindparam("now", type_=_user.c.updated_at.type))
    .returning(_user.c.id)
)
_STATUS = Prepared(
    select(_user.c.status).where(
        _user.c.id == bindparam("user_id", type_=Integer), _user.c.deleted_at.is_(None)
    )
)
_RECORD = Prepared(
    insert(_ledger)
    .values({column: bindparam(column.key, type_=column.type) for column in _RECORDED})
    .returning(*_ledger.c)
)
# Locks the row until commit on PostgreSQL; SQLite's write transactions already hold the
# database's write lock (`BEGIN IMMEDIATE`).
_BALANCE_FOR_UPDATE = (
    select(_user.c.credits)
    .where(_user.c.id == bindparam("user_id", type_=Integer), _user.c.deleted_at.is_(None))
    .with_for_update()
    .execution_options(include_deleted=True)
)


@dataclass(frozen=True)
class Refusal:
    """Why `apply` stopped: the user whose balance would leave [0, MAX_BALANCE_CENTS]."""

    user_id: int
    delta: int


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def apply(self, deltas: Mapping[int, int]) -> Refusal | None:
        """Add `deltas[user_id]` cents to each balance, or stop at the first refusal.

        One guarded `UPDATE ... WHERE credits + :delta BETWEEN 0 AND max` per user, in
        ascending id order: the database checks and writes in one step (no read-then-write
        race at READ COMMITTED), and two transactions touching the same users lock them in
        the same order, so they queue instead of deadlocking. On a refusal the caller must
        roll back: earlier updates of this call are not undone here.
        """
        now = utcnow()
        for user_id in sorted(deltas):
            delta = deltas[user_id]
            if delta == 0:
                continue
            # A Core UPDATE: objects already in the session keep their old `credits` (as
            # with `synchronize_session=False` before); nothing reads them after this.
            applied = await _APPLY.scalar(self.session, user_id=user_id, delta=delta, now=now)
            if applied is None:
                return Refusal(user_id, delta)
        return None

    async def balance_for_update(self, user_id: int) -> int | None:
        """The balance of a live user, locked until the transaction ends; None when absent."""
        return await self.session.scalar(_BALANCE_FOR_UPDATE, {"user_id": user_id})

    async def exists_active(self, user_id: int) -> bool:
        found = await _STATUS.scalar(self.session, user_id=user_id)
        return found is not None and found == "active"


class LedgerRepository(Repository[CreditTransfer]):
    model = CreditTransfer

    async def record(
        self, *, kind: TransferKind, from_user_id: int | None, to_user_id: int | None,
        amount: int, note: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        """Insert one ledger row with a Core INSERT ... RETURNING; the new row (every column).

        Cheaper than `add` (no ORM object, no unit-of-work flush) for a caller that only
        renders the row, e.g. `TransferRead.model_validate(row)`.
        """
        row = await _RECORD.one_or_none(
            self.session, kind=kind, from_user_id=from_user_id, to_user_id=to_user_id,
            amount=amount, note=note, created_at=utcnow(),
        )  # fmt: skip
        assert row is not None  # INSERT ... RETURNING returns the row it inserted
        return row

    async def history(self, user_id: int, params: CursorParams) -> CursorPage[CreditTransfer]:
        """Rows sent or received by `user_id`, newest first."""
        involved = or_(CreditTransfer.from_user_id == user_id, CreditTransfer.to_user_id == user_id)
        return await self.cursor_page(params, where=[involved], order_by=[CreditTransfer.id.desc()])
