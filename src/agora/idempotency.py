"""Idempotency keys: a retried write returns the first response instead of acting twice.

    result = await run_idempotent(
        uow, user_id=me, scope="orders", key=key, payload=body, work=place
    )
    await uow.commit()

In the transaction of the work itself, the key is claimed with one
`INSERT ... ON CONFLICT DO NOTHING RETURNING id`, scoped to the user and the endpoint, with a
SHA-256 fingerprint of the request body; the work runs, and its status and JSON body are
stored in the claimed row before the caller commits. So a committed key always carries its
response, and nothing is claimed by a request that failed (an error rolls everything back,
and a retry runs afresh).

Concurrent requests with one key: on PostgreSQL the second INSERT waits on the unique index
until the first transaction ends, then reads the committed row; on SQLite writers are
serialized by `BEGIN IMMEDIATE`. Either way one request does the work and the others replay
its response. The same key with another body is a 422.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agora.db.errors import BadRequest, Conflict, Invalid
from agora.db.uow import UnitOfWork, retrying_in
from agora.db.upsert import upsert_statement
from agora.models.market import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_MIN, IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Visible ASCII only: the key is echoed in logs and compared byte for byte.
_KEY = re.compile(rf"[\x21-\x7e]{{{IDEMPOTENCY_KEY_MIN},{IDEMPOTENCY_KEY_MAX}}}")


class MissingIdempotencyKey(BadRequest):
    default_detail = f"This request needs an {HEADER} header"


class InvalidIdempotencyKey(BadRequest):
    default_detail = (
        f"{HEADER} must be {IDEMPOTENCY_KEY_MIN}-{IDEMPOTENCY_KEY_MAX} visible ASCII characters"
    )


class IdempotencyKeyReused(Invalid):
    default_detail = f"This {HEADER} was used with another request body"


class IdempotencyKeyLost(Conflict):
    default_detail = f"This {HEADER} could not be read back; retry the request"


def checked_key(key: str | None, *, required: bool) -> str | None:
    """The header's value when acceptable; 400 when missing (and required) or malformed."""
    if key is None:
        if required:
            raise MissingIdempotencyKey()
        return None
    if not _KEY.fullmatch(key):
        raise InvalidIdempotencyKey()
    return key


def fingerprint(payload: Any) -> str:
    """SHA-256 of the payload as canonical JSON (sorted keys)."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str  # JSON text, returned byte for byte on a replay
    replayed: bool = False


class IdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, *, user_id: int, scope: str, key: str, fingerprint: str) -> int | None:
        """Insert the key; its id, or None when the user already used it in `scope`."""
        values = {"user_id": user_id, "scope": scope, "key": key, "fingerprint": fingerprint}
        stmt = upsert_statement(
            IdempotencyKey,
            dialect_name=self.session.get_bind().dialect.name,
            keys=values.keys(),
            on=("user_id", "scope", "key"),
            update=(),
        )
        result = await self.session.execute(stmt.values(values).returning(IdempotencyKey.id))
        claimed: int | None = result.scalar_one_or_none()
        return claimed

    async def get(self, *, user_id: int, scope: str, key: str) -> IdempotencyKey | None:
        stmt = select(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.scope == scope,
            IdempotencyKey.key == key,
        )
        found = await self.session.scalars(stmt.execution_options(populate_existing=True))
        return found.one_or_none()

    async def store(self, claim_id: int, response: StoredResponse) -> None:
        await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == claim_id)
            .values(status_code=response.status_code, response_body=response.body),
            execution_options={"synchronize_session": False},
        )


async def run_idempotent(
    uow: UnitOfWork,
    *,
    user_id: int,
    scope: str,
    key: str | None,
    payload: Any,
    work: Callable[[], Awaitable[StoredResponse]],
) -> StoredResponse:
    """Claim `key`, run `work()` and store its response; or replay the stored response.

    Does not commit: the caller commits once, so the claim, the work and the stored
    response land together or not at all. Without a key, `work()` simply runs.
    """
    if key is None:
        return await work()
    keys = uow.repo(IdempotencyRepository)
    digest = fingerprint(payload)
    claim_id = await keys.claim(user_id=user_id, scope=scope, key=key, fingerprint=digest)
    if claim_id is None:
        return await _replay(keys, user_id=user_id, scope=scope, key=key, digest=digest)
    response = await work()
    await keys.store(claim_id, response)
    return response


async def commit_idempotent(
    uow: UnitOfWork,
    *,
    user_id: int,
    scope: str,
    key: str | None,
    payload: Any,
    work: Callable[[], Awaitable[StoredResponse]],
) -> StoredResponse:
    """A whole idempotent write: `run_idempotent`, then one commit, the pair run again on a
    serialization failure or deadlock (`retrying_in`, which rolls back between attempts)."""

    async def attempt() -> StoredResponse:
        result = await run_idempotent(
            uow, user_id=user_id, scope=scope, key=key, payload=payload, work=work
        )
        await uow.commit()
        return result

    return await retrying_in(uow, attempt)


async def _replay(
    keys: IdempotencyRepository, *, user_id: int, scope: str, key: str, digest: str
) -> StoredResponse:
    stored = await keys.get(user_id=user_id, scope=scope, key=key)
    if stored is None or stored.status_code is None or stored.response_body is None:
        raise IdempotencyKeyLost()  # only if the row vanished (its user was deleted)
    if stored.fingerprint != digest:
        raise IdempotencyKeyReused()
    return StoredResponse(stored.status_code, stored.response_body, replayed=True)
