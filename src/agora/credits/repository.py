"""Balances and the ledger. Balances change only through `AccountRepository.apply`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agora.db.pagination import CursorPage, CursorParams
from agora.db.repository import Repository
from agora.models.market import CreditTransfer
from agora.models.user import User

# Far inside BIGINT, so `credits + delta` never overflows in the database.
MAX_BALANCE_CENTS = 10**18


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
        for user_id in sorted(deltas):
            delta = deltas[user_id]
            if delta == 0:
                continue
            new_balance = User.credits + delta
            stmt = (
                update(User)
                .where(User.id == user_id, new_balance >= 0, new_balance <= MAX_BALANCE_CENTS)
                .values(credits=new_balance)
                .returning(User.id)
                .execution_options(synchronize_session=False)
            )
            if (await self.session.execute(stmt)).scalar_one_or_none() is None:
                return Refusal(user_id, delta)
        return None

    async def exists_active(self, user_id: int) -> bool:
        found = await self.session.scalar(
            select(User.status).where(User.id == user_id, User.deleted_at.is_(None))
        )
        return found is not None and found == "active"


class LedgerRepository(Repository[CreditTransfer]):
    model = CreditTransfer

    async def history(self, user_id: int, params: CursorParams) -> CursorPage[CreditTransfer]:
        """Rows sent or received by `user_id`, newest first."""
        involved = or_(CreditTransfer.from_user_id == user_id, CreditTransfer.to_user_id == user_id)
        return await self.cursor_page(params, where=[involved], order_by=[CreditTransfer.id.desc()])
