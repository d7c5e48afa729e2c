"""Credits' use cases: transfers between members, grants and adjustments by superusers.

Each runs as one transaction, retried as a whole on serialization failure or deadlock
(`retrying_in`), and commits once. Balances change only through
`AccountRepository.apply` (guarded single-statement UPDATEs in ascending user id order), and
every change is a ledger row written in the same transaction.
"""

from __future__ import annotations

from agora.credits.errors import (
    BalanceOwnerNotFound,
    BalanceTooLarge,
    GrantNotAllowed,
    InsufficientCredits,
    RecipientNotFound,
    TransferToSelf,
)
from agora.credits.repository import AccountRepository, LedgerRepository, Refusal
from agora.credits.schemas import GrantCreate, TransferCreate, TransferRead
from agora.db.errors import AppError
from agora.db.pagination import CursorPage, CursorParams
from agora.db.uow import UnitOfWork
from agora.idempotency import StoredResponse, commit_idempotent
from agora.models.market import CreditTransfer, TransferKind

TRANSFER_SCOPE = "credit_transfers"
GRANT_SCOPE = "credit_grants"


async def _pay_active_recipient(uow: UnitOfWork, recipient_id: int, deltas: dict[int, int]) -> None:
    """Apply `deltas` (cents per user) when `recipient_id` is an active member: 404
    `RecipientNotFound` otherwise, 409 when a balance would leave its bounds."""
    accounts = uow.repo(AccountRepository)
    if not await accounts.exists_active(recipient_id):
        raise RecipientNotFound()
    refusal = await accounts.apply(deltas)
    if refusal is not None:
        raise refusal_error(refusal)


def refusal_error(refusal: Refusal, *, who: str = "") -> AppError:
    if refusal.delta > 0:
        return BalanceTooLarge()
    return InsufficientCredits(f"Not enough credits{who}")


async def transfer_credits(
    uow: UnitOfWork, *, sender_id: int, data: TransferCreate, key: str | None
) -> StoredResponse:
    """Move credits from the sender to `data.to_user_id`; 201 with the ledger row."""
    if data.to_user_id == sender_id:
        raise TransferToSelf()

    async def work() -> StoredResponse:
        await _pay_active_recipient(
            uow, data.to_user_id, {sender_id: -data.amount, data.to_user_id: data.amount}
        )
        row = await uow.repo(LedgerRepository).record(
            kind=TransferKind.transfer,
            from_user_id=sender_id,
            to_user_id=data.to_user_id,
            amount=data.amount,
            note=data.note,
        )
        return StoredResponse(201, TransferRead.model_validate(row).model_dump_json())

    return await commit_idempotent(
        uow,
        user_id=sender_id,
        scope=TRANSFER_SCOPE,
        key=key,
        payload=data.model_dump(mode="json"),
        work=work,
    )


async def grant_credits(
    uow: UnitOfWork, *, actor_id: int, is_superuser: bool, data: GrantCreate, key: str | None
) -> StoredResponse:
    """Mint credits for a member; recorded in the ledger as a `grant` without a sender.

    With an Idempotency-Key (scoped to the granting superuser), a retry after an unknown
    outcome replays the first grant instead of minting the credits twice.
    """
    if not is_superuser:
        raise GrantNotAllowed()

    async def work() -> StoredResponse:
        await _pay_active_recipient(uow, data.to_user_id, {data.to_user_id: data.amount})
        row = await uow.repo(LedgerRepository).add(
            CreditTransfer(
                kind=TransferKind.grant,
                from_user_id=None,
                to_user_id=data.to_user_id,
                amount=data.amount,
                note=data.note or f"granted by user {actor_id}",
            )
        )
        return StoredResponse(201, TransferRead.model_validate(row).model_dump_json())

    return await commit_idempotent(
        uow,
        user_id=actor_id,
        scope=GRANT_SCOPE,
        key=key,
        payload=data.model_dump(mode="json"),
        work=work,
    )


async def set_balance(uow: UnitOfWork, *, actor_id: int, user_id: int, balance: int) -> int:
    """Set a balance through the ledger, inside the caller's transaction (no commit).

    The difference is one `adjustment` row: from nobody when the balance grows, to nobody
    when it shrinks; nothing when it stays. The balance is read under a row lock, so a
    transfer committing meanwhile cannot slip between the read and the write. Returns the
    change in cents. The caller checks that the actor is a superuser.
    """
    accounts = uow.repo(AccountRepository)
    current = await accounts.balance_for_update(user_id)
    if current is None:
        raise BalanceOwnerNotFound()
    delta = balance - current
    if delta == 0:
        return 0
    refusal = await accounts.apply({user_id: delta})
    if refusal is not None:  # only if the CHECK-guarded bounds are crossed
        raise refusal_error(refusal)
    await uow.repo(LedgerRepository).record(
        kind=TransferKind.adjustment,
        from_user_id=user_id if delta < 0 else None,
        to_user_id=user_id if delta > 0 else None,
        amount=abs(delta),
        note=f"balance set to {balance} cents by user {actor_id}",
    )
    return delta


async def list_transfers(
    uow: UnitOfWork, *, user_id: int, params: CursorParams
) -> CursorPage[CreditTransfer]:
    return await uow.repo(LedgerRepository).history(user_id, params)
