"""Passwords (Argon2id via pwdlib) and access tokens (HS256 JWT via PyJWT).

Both are plain objects built from settings; services receive them as arguments and never
import FastAPI.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import anyio
import anyio.to_thread
import jwt
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher

from agora.members.errors import InvalidToken

T = TypeVar("T")

PASSWORD_MIN, PASSWORD_MAX = 8, 128
MAX_USER_ID = 2**31 - 1  # the `user.id` column is a 32-bit integer
MAX_TOKEN_VERSION = 2**31 - 1  # `user.token_version` too


class Passwords:
    """Hash and verify passwords with Argon2id, off the event loop.

    A hash takes tens of milliseconds of CPU and `memory_kib` of RAM, so the work runs in
    worker threads, at most `concurrency` at a time (default: one per core): a burst of
    logins queues instead of allocating 19 MiB per request all at once.
    """

    def __init__(
        self,
        *,
        memory_kib: int,
        time_cost: int,
        parallelism: int,
        concurrency: int | None = None,
    ) -> None:
        hasher = Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self._context = PasswordHash((hasher,))
        self._concurrency = concurrency or os.cpu_count() or 1
        self._limiter: anyio.CapacityLimiter | None = None
        self._dummy_hash: str | None = None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._limiter is None:  # created lazily: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self._concurrency)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def hash(self, password: str) -> str:
        return await self._run(self._context.hash, password)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """(matches, new hash or None). A new hash means the parameters changed: store it."""
        try:
            return await self._run(self._context.verify_and_update, password, hashed)
        except UnknownHashError:
            return False, None

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real check, for a login whose account does not exist.

        Without it, "no such user" answers faster than "wrong password" and leaks which
        accounts exist.
        """
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(uuid.uuid4().hex)
        await self.verify(password, self._dummy_hash)


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int  # seconds


@dataclass(frozen=True, slots=True)
class TokenSubject:
    """Who a valid access token speaks for: the user id and the user's `token_version` when
    it was issued (a password change bumps the version: older tokens stop working)."""

    user_id: int
    version: int = 0


class Tokens:
    """Issue and check HS256 access tokens carrying `sub` (the user id), `ver` (the user's
    token version), `iat`, `exp`, `jti`.

    Tokens that verified are remembered (up to `CACHE_SIZE`, least recently used out) with
    their user id and expiry: a client sends the same token with every request, and checking
    it again (base64, JSON, HMAC, claims) cost ~8% of a credit transfer's CPU (bench/README.md).
    A remembered token still stops working at its `exp`; a string that differs in any byte is
    checked in full. Revocation does not depend on this: every authenticated route checks
    the account in the database.
    """

    ALGORITHM = "HS256"
    MAX_LENGTH = 4096
    CACHE_SIZE = 10_000

    def __init__(self, secret_key: str, *, ttl: timedelta) -> None:
        # A key derived for this purpose only: AGORA_SECRET_KEY also signs cursors, and a
        # value signed for one purpose must never be accepted as the other.
        self._key = hmac.new(secret_key.encode(), b"agora/access-token", hashlib.sha256).digest()
        self.ttl = ttl
        self._verified: OrderedDict[str, tuple[TokenSubject, float]] = OrderedDict()  # ..., exp

    def issue(self, user_id: int, *, version: int = 0, now: datetime | None = None) -> AccessToken:
        issued = now or datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "ver": version,
            "iat": issued,
            "exp": issued + self.ttl,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._key, algorithm=self.ALGORITHM)
        return AccessToken(token=token, expires_in=int(self.ttl.total_seconds()))

    def user_id(self, token: str) -> int:
        """The user id a valid token was issued to; `InvalidToken` for anything else."""
        return self.subject(token).user_id

    def subject(self, token: str) -> TokenSubject:
        """The user id and token version a valid token was issued with; `InvalidToken` for
        anything else. A token without `ver` (issued before versions existed) has version 0.

        The accepted algorithm is pinned (no `alg: none`, no algorithm confusion) and `exp`
        and `sub` must be present, https://pyjwt.readthedocs.io/en/stable/api.html
        """
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1]:  # PyJWT's rule, without leeway: valid while now < exp
                self._verified.move_to_end(token)
                return known[0]
            del self._verified[token]  # expired: the full check below refuses it
        if len(token) > self.MAX_LENGTH:
            raise InvalidToken()
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.ALGORITHM],
                options={"require": ["exp", "iat", "sub", "jti"]},
            )
        except jwt.PyJWTError:
            raise InvalidToken() from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub.isascii() or not sub.isdigit():
            raise InvalidToken()
        user_id = int(sub)
        if not 1 <= user_id <= MAX_USER_ID:
            raise InvalidToken()
        version = claims.get("ver", 0)
        if type(version) is not int or not 0 <= version <= MAX_TOKEN_VERSION:
            raise InvalidToken()
        subject = TokenSubject(user_id, version)
        self._verified[token] = (subject, float(claims["exp"]))
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return subject
