"""`FairAsyncQueuePool`: SQLAlchemy's asyncio queue pool, serving waiters first come, first served.

SQLAlchemy's `AsyncAdaptedQueuePool` keeps idle connections in an `asyncio.Queue`. When a
connection comes back while tasks wait, the queue wakes the first waiter, but a task that
asks for a connection before the woken one runs takes it (`get_nowait` finds it there), and
the woken waiter, finding the queue empty again, queues up *at the back*. Under sustained
oversubscription (more concurrent requests than connections, the normal state of a busy
service) half the requests get a connection at once and the others lose that race again and
again: measured with 64 clients on a pool of 10, 55% of checkouts waited < 0.5 ms while the
rest waited up to 2.5 s, a p99 of 25x the median (bench/README.md, S6). The same behaviour is
discussed for asyncio.Queue itself (https://github.com/python/cpython/issues/83055) and for
asyncpg's own pool (https://github.com/MagicStack/asyncpg/issues/1247).

This pool changes only the queue: a connection returned while tasks wait is handed straight
to the longest-waiting one, and an idle connection is only ever on the shelf when nobody
waits, so no newcomer can overtake. Everything else -- sizes, overflow, `pool_timeout`,
`pool_recycle`, pre-ping, events, the `TimeoutError` when the wait is too long -- is
SQLAlchemy's `QueuePool` unchanged.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util.queue import AsyncAdaptedQueue

T = TypeVar("T")


class FairQueue(Generic[T]):
    """The subset of `asyncio.Queue` that SQLAlchemy's `AsyncAdaptedQueue` uses, with direct
    hand-off to waiters in arrival order.

    Invariant: `_items` is empty whenever `_waiters` is not (a put hands its item to a waiter
    if there is one; a get waits only when there is no item).
    """

    def __init__(self, maxsize: int = 0, *, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self._use_lifo = use_lifo
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def put_nowait(self, item: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a waiter that gave up (timeout, cancel) is skipped
                waiter.set_result(item)
                return
        if self.full():
            raise asyncio.QueueFull
        self._items.append(item)

    async def put(self, item: T) -> None:
        self.put_nowait(item)  # the pool never waits to give a connection back

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop() if self._use_lifo else self._items.popleft()

    async def get(self) -> T:
        if self._items:
            return self.get_nowait()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:  # timed out or cancelled
            if waiter.done() and not waiter.cancelled():
                # Handed a connection just before giving up: pass it on, never drop it.
                self.put_nowait(waiter.result())
            else:
                waiter.cancel()  # put_nowait skips it; removing it here would cost O(n)
            raise


class FairAsyncAdaptedQueue(AsyncAdaptedQueue[T]):
    """SQLAlchemy's asyncio queue adapter (timeouts, `Empty`/`Full`) over a `FairQueue`."""

    @property
    def _queue(self) -> FairQueue[T]:  # type: ignore[override]
        # Created on first use, in the running loop, as SQLAlchemy's own queue is.
        queue: FairQueue[T] | None = self.__dict__.get("_fair_queue")
        if queue is None:
            queue = self.__dict__["_fair_queue"] = FairQueue(self.maxsize, use_lifo=self.use_lifo)
        return queue


class FairAsyncQueuePool(AsyncAdaptedQueuePool):
    """`AsyncAdaptedQueuePool` whose waiters are served in arrival order (module docstring)."""

    _queue_class = FairAsyncAdaptedQueue  # type: ignore[assignment]
