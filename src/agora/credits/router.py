"""Credits' HTTP API: transfers, their history, and grants (mounted under /api/v1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Response, status

from agora.credits import service
from agora.credits.schemas import GrantCreate, TransferCreate, TransferRead
from agora.db.api import ReadUoW, WriteUoW
from agora.db.pagination import CursorPage, CursorQuery
from agora.idempotency import HEADER, REPLAYED_HEADER, StoredResponse, checked_key
from agora.members.deps import CurrentUser, CurrentUserForWrite, CurrentUserIdForWrite
from agora.openapi import errors
from agora.routing import PrefixRouter

router = PrefixRouter(prefix="/credits", tags=["credits"])

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        description="8-255 visible ASCII characters; a retry with the same key and body "
        "returns the first response",
    ),
]


def stored_response(result: StoredResponse) -> Response:
    headers = {REPLAYED_HEADER: "true"} if result.replayed else None
    return Response(
        content=result.body,
        status_code=result.status_code,
        media_type="application/json",
        headers=headers,
    )


@router.post(
    "/transfers",
    status_code=status.HTTP_201_CREATED,
    response_model=TransferRead,
    responses={**errors(400, 404), 409: {"description": "InsufficientCredits"}},
)
async def create_transfer(
    data: TransferCreate,
    uow: WriteUoW,
    sender_id: CurrentUserIdForWrite,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Send credits to another member (409 `InsufficientCredits`); optional Idempotency-Key."""
    key = checked_key(idempotency_key, required=False)
    result = await service.transfer_credits(uow, sender_id=sender_id, data=data, key=key)
    return stored_response(result)


@router.get("/transfers", response_model=CursorPage[TransferRead])
async def list_transfers(uow: ReadUoW, user: CurrentUser, page: CursorQuery) -> Any:
    """The caller's ledger (sent and received), newest first, by cursor."""
    return await service.list_transfers(uow, user_id=user.id, params=page)


@router.post(
    "/grants",
    status_code=status.HTTP_201_CREATED,
    response_model=TransferRead,
    responses=errors(400, 403, 404),
)
async def create_grant(
    data: GrantCreate,
    uow: WriteUoW,
    actor: CurrentUserForWrite,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Mint credits for a member (superusers only); optional Idempotency-Key."""
    key = checked_key(idempotency_key, required=False)
    result = await service.grant_credits(
        uow, actor_id=actor.id, is_superuser=actor.is_superuser, data=data, key=key
    )
    return stored_response(result)
