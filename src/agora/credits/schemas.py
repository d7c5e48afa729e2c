"""Credits' request and response bodies. Amounts are decimal strings ("12.50")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agora.members.security import MAX_USER_ID
from agora.models.market import NOTE_MAX, TransferKind
from agora.money import Amount, AmountOut
from agora.schemas import NoNul

UserRef = Annotated[int, Field(ge=1, le=MAX_USER_ID)]
PositiveAmount = Annotated[Amount, Field(gt=0)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=NOTE_MAX), NoNul]


class TransferCreate(BaseModel):
    """Send `amount` (> 0, at most two decimals) of one's own credits to another member."""

    model_config = ConfigDict(extra="forbid")

    to_user_id: UserRef
    amount: PositiveAmount
    note: Note = ""


class GrantCreate(TransferCreate):
    """Mint `amount` credits for a member (superusers only)."""


class TransferRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: TransferKind
    from_user_id: int | None  # None: a grant or a credit adjustment
    to_user_id: int | None  # None: a debit adjustment
    amount: AmountOut
    note: str
    order_id: int | None
    created_at: datetime
