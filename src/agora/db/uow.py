"""Unit of work: one session, its repositories, and an explicit commit.

    async with UnitOfWork(sessionmaker) as uow:
        user = await uow.repo(UserRepository).get(1)
        ...
        await uow.commit()          # nothing is written unless this runs

Leaving the block without `commit()` rolls back, so an exception (or a forgotten commit)
never writes half a use case. Errors raised by flush/commit come out typed
(`agora.db.errors.translate`): a unique violation is a `Duplicate`, never a bare
`IntegrityError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora.db.errors import (
    CommitOutcomeUnknown,
    ServiceUnavailable,
    is_retryable,
    sqlstate,
    translate,
    translating,
)

R = TypeVar("R")
T = TypeVar("T")


class UnitOfWork:
    """Async context manager around one `AsyncSession`, opened on first use.

    The session is created the first time something asks for it (`uow.session`, a
    repository's statement), not on entry: a read-only unit whose statements are all
    `Prepared` reads, given the unit itself (`Repository` subclasses pass it), never needs one
    -- creating and dropping it was ~6% of a one-query read (bench/README.md, "Tenth round").
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._factory = session_factory
        self._on_commit = on_commit  # called after each successful commit
        self._session: AsyncSession | None = None
        self._active = False
        self._repos: dict[type[Any], Any] = {}

    @property
    def session(self) -> AsyncSession:
        """The unit's session, created on first use."""
        session = self._session
        if session is None:
            if not self._active:
                raise RuntimeError("UnitOfWork used outside `async with`")
            session = self._session = self._factory()
        return session

    @property
    def opened_session(self) -> AsyncSession | None:
        """The session if one was created yet, else None (without creating it)."""
        if not self._active:
            raise RuntimeError("UnitOfWork used outside `async with`")
        return self._session

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        """Where the session comes from (its configuration: `kw["bind"]`, `kw["info"]`)."""
        return self._factory

    async def __aenter__(self) -> Self:
        self._active = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        self._active = False
        self._repos.clear()
        if session is None:
            return
        if session.in_transaction():
            # close() rolls back whatever was not committed and returns the connection.
            await asyncio.shield(session.close())
        elif session.identity_map or session.new or session.deleted:
            session.expunge_all()  # no transaction, so no connection: only objects to detach

    def repo(self, repo_cls: Callable[[Any], R]) -> R:
        """The repository of class `repo_cls` for this unit of work (cached): made from the
        unit itself when the class says it takes one (`takes_unit`, as `Repository` does), so
        its session is opened only if a statement needs it; else from the session."""
        key: Any = repo_cls
        repo = self._repos.get(key)
        if repo is None:
            source = self if getattr(repo_cls, "takes_unit", False) else self.session
            repo = self._repos[key] = repo_cls(source)
        return repo

    async def flush(self) -> None:
        await _translated(self.session.flush())

    async def commit(self) -> None:
        """Flush, then COMMIT. A failure of the flush (or of anything before it), or an error
        the server answers COMMIT with, means nothing was written. A connection failure during
        COMMIT leaves the outcome unknown: `CommitOutcomeUnknown` (503), so a client can tell
        the two apart (and retry with the same Idempotency-Key)."""
        await self.flush()
        try:
            await self.session.commit()
        except Exception as exc:
            if is_retryable(exc):  # the server rolled back: `retrying` may run it again
                raise
            typed = translate(exc)
            if isinstance(typed, ServiceUnavailable) or (
                typed is None and isinstance(exc, DBAPIError) and sqlstate(exc) is None
            ):
                raise CommitOutcomeUnknown() from exc
            if typed is None or typed is exc:
                raise
            raise typed from exc
        if self._on_commit is not None:
            self._on_commit()

    async def rollback(self) -> None:
        await self.session.rollback()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Nested work: an error inside rolls back to the savepoint only, then re-raises."""
        # The flush that releases the savepoint runs on exit, outside the block: translate
        # both, so a constraint refusing the nested work surfaces typed too.
        with translating():
            async with self.session.begin_nested():
                yield


async def _translated(awaitable: Awaitable[None]) -> None:
    # Serialization failures and deadlocks stay untyped so that `retrying` sees them.
    with translating():
        await awaitable


async def retrying(
    work: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    base_delay: float = 0.01,
    max_delay: float = 0.5,
) -> T:
    """Run `work()` (a whole transaction) again on serialization failure or deadlock.

    `work` must open its own unit of work so that each attempt starts from scratch.
    Waits grow exponentially with full jitter and are bounded by `max_delay`; after
    `attempts` tries the last error propagates (the API renders it as a 503).
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == attempts:
                raise
        delay = min(max_delay, base_delay * 2 ** (attempt - 1))
        await asyncio.sleep(random.uniform(0, delay))
    raise AssertionError("unreachable")  # pragma: no cover


async def retrying_in(
    uow: UnitOfWork,
    work: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    base_delay: float = 0.01,
    max_delay: float = 0.5,
) -> T:
    """`retrying` for a unit of work that a caller already opened (e.g. a request's).

    `work()` runs a whole transaction on `uow` and commits it. When it fails, this unit is
    rolled back before the error propagates, so a retry starts a new transaction. A rollback
    expires every object of the session: `work` must read what it needs again (and callers
    should pass plain ids, not ORM objects loaded earlier).
    """

    async def attempt() -> T:
        try:
            return await work()
        except BaseException:
            # A failed rollback (a dropped connection) must not hide the original error;
            # the unit's close() cleans up either way.
            with contextlib.suppress(Exception):
                await asyncio.shield(uow.rollback())
            raise

    return await retrying(attempt, attempts=attempts, base_delay=base_delay, max_delay=max_delay)
