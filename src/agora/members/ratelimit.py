"""Login rate limiting with the `limits` library (moving window).

Storage is in-process memory by default; with `AGORA_REDIS_URL` every process shares one
Redis, so N workers do not multiply the limit by N.
https://limits.readthedocs.io/en/stable/async.html
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from agora.members.errors import TooManyLoginAttempts


def storage_for(redis_url: str | None, *, key_prefix: str = "agora") -> Storage:
    if redis_url is None:
        return MemoryStorage()
    # `limits` picks its async Redis client from the "async+" scheme prefix.
    return RedisStorage(f"async+{redis_url}", key_prefix=key_prefix)


class LoginLimiter:
    """Counts every login attempt per client address and per account.

    Every attempt counts, successful or not: counting only failures would need a check and
    a later hit, and concurrent guesses could all pass the check before any hit.
    """

    def __init__(self, storage: Storage, *, per_account: str, per_address: str) -> None:
        self.storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        self._per_account = parse_many(per_account)
        self._per_address = parse_many(per_address)

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

    async def reset(self) -> None:
        await self.storage.reset()
