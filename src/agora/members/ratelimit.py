"""Login rate limiting with the `limits` library (moving window).

Storage is in-process memory by default; with `AGORA_REDIS_URL` every process shares one
Redis, so N workers do not multiply the limit by N.
https://limits.readthedocs.io/en/stable/async.html
"""

from __future__ import annotations

import math
import time
from typing import Any

import coredis
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from agora.members.errors import TooManyLoginAttempts


class LoginLimiter:
    """Counts every login attempt per client address and per account.

    Every attempt counts, successful or not: counting only failures would need a check and
    a later hit, and concurrent guesses could all pass the check before any hit.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        per_account: str,
        per_address: str,
        redis_pool: coredis.ConnectionPool | None = None,
    ) -> None:
        self.storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        self._per_account = parse_many(per_account)
        self._per_address = parse_many(per_address)
        self._redis_pool = redis_pool

    @classmethod
    def create(
        cls, *, redis_url: str | None, per_account: str, per_address: str, key_prefix: str = "agora"
    ) -> LoginLimiter:
        """Memory storage, or Redis at `redis_url` (no connection is made until first use)."""
        if redis_url is None:
            return cls(MemoryStorage(), per_account=per_account, per_address=per_address)
        # Our own pool, so that `aclose` can close its sockets. `limits` picks its async
        # Redis client from the "async+" scheme prefix.
        pool = coredis.ConnectionPool.from_url(redis_url)
        options: dict[str, Any] = {"key_prefix": key_prefix, "connection_pool": pool}
        storage = RedisStorage(f"async+{redis_url}", **options)
        return cls(storage, per_account=per_account, per_address=per_address, redis_pool=pool)

    async def hit_address(self, address: str) -> None:
        await self._hit(self._per_address, "login-address", address)

    async def hit_account(self, account: str) -> None:
        await self._hit(self._per_account, "login-account", account)

    async def _hit(self, items: list[RateLimitItem], *key: str) -> None:
        for item in items:
            if not await self._strategy.hit(item, *key):
                stats = await self._strategy.get_window_stats(item, *key)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                raise TooManyLoginAttempts(retry_after)

    async def clear(self, *, account: str | None = None, address: str | None = None) -> None:
        """Forget the attempts counted for an account and/or an address (an admin unlock)."""
        for items, kind, key in (
            (self._per_account, "login-account", account),
            (self._per_address, "login-address", address),
        ):
            if key is not None:
                for item in items:
                    await self._strategy.clear(item, kind, key)

    async def aclose(self) -> None:
        """Close the Redis connections, if any (memory storage holds none)."""
        if self._redis_pool is not None:
            self._redis_pool.disconnect()
