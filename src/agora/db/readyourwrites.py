"""Read-your-writes with replicas: a signed WAL position that travels with the client.

A client that has just written must see its write on its next read, even when that read
would go to a replica that has not replayed it yet. `ReadYourWritesMiddleware` does it
statelessly, so it works across any number of app processes:

1. A request whose unit of work committed (`note_commit`, called by `UnitOfWork.commit`) gets,
   when its response starts, the primary's WAL *insert* position
   (`pg_current_wal_insert_lsn()`, past the COMMIT record just written). That is **one extra
   round trip per writing request**, and only when replicas are configured; a read costs
   nothing extra. (Asking inside the transaction would be free but is not safe: the COMMIT
   record comes after any position read before it.)
2. The position goes back signed and time-stamped (itsdangerous, with the app's secret) in
   an `HttpOnly` cookie and in the `X-Read-After` response header, for clients without a
   cookie jar, which echo it in an `X-Read-After` request header.
3. On the following requests, within `window` seconds, reads go to a replica only if the
   background probe saw it replay at least that far (`ReplicaSet.choose(min_lsn)`), else to
   the primary. A missing, forged or expired token means "any healthy replica".

If the primary cannot tell its position after the commit, the token says "primary only" for
the window instead (never a stale read for the writer).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from itsdangerous import BadSignature, TimestampSigner
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("agora.db.readyourwrites")

COOKIE = "agora_read_after"
HEADER = "x-read-after"
PRIMARY_ONLY = sys.maxsize  # a position no replica reaches: read on the primary
_PRIMARY_ONLY_VALUE = "primary"


@dataclass
class RequestState:
    min_lsn: int | None = None  # the client's last write position, from its token
    wrote: bool = False  # a unit of work of this request committed


_state: ContextVar[RequestState | None] = ContextVar("agora_read_your_writes", default=None)


def current_min_lsn() -> int | None:
    """The WAL position this request's reads must see (None: any replica will do)."""
    state = _state.get()
    return None if state is None else state.min_lsn


def note_commit() -> None:
    """Record that the current request committed a write (no-op outside the middleware)."""
    state = _state.get()
    if state is not None:
        state.wrote = True


class PositionSigner:
    """Sign and check WAL positions; a token older than `max_age` seconds is ignored."""

    def __init__(self, secret: str, *, max_age: int) -> None:
        self._signer = TimestampSigner(secret, salt="agora.db.read-after")
        self.max_age = max_age

    def sign(self, lsn: int) -> str:
        value = _PRIMARY_ONLY_VALUE if lsn >= PRIMARY_ONLY else format(lsn, "x")
        return self._signer.sign(value).decode("ascii")

    def verify(self, token: str | None) -> int | None:
        if not token:
            return None
        try:
            value = self._signer.unsign(token, max_age=self.max_age).decode("ascii")
        except (BadSignature, UnicodeError):  # SignatureExpired is a BadSignature
            return None
        if value == _PRIMARY_ONLY_VALUE:
            return PRIMARY_ONLY
        try:
            return int(value, 16)
        except ValueError:
            return None


PositionSource = Callable[[Scope], Callable[[], Awaitable[int]] | None]


class ReadYourWritesMiddleware:
    """Pure ASGI middleware; see the module docstring.

    `position_source(scope)` returns the coroutine function that reads the primary's
    position, or None when the app has no replicas (then the middleware does nothing).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        signer: PositionSigner,
        position_source: PositionSource,
        secure_cookie: bool = False,
    ) -> None:
        self.app = app
        self.signer = signer
        self.position_source = position_source
        self.cookie_attributes = f"Max-Age={signer.max_age}; Path=/; HttpOnly; SameSite=Lax"
        if secure_cookie:
            self.cookie_attributes += "; Secure"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        read_position = self.position_source(scope) if scope["type"] == "http" else None
        if read_position is None:
            await self.app(scope, receive, send)
            return
        state = RequestState(min_lsn=self.signer.verify(_token(scope)))
        reset = _state.set(state)

        async def send_with_position(message: Message) -> None:
            if message["type"] == "http.response.start" and state.wrote:
                token = self.signer.sign(await _position_or_primary_only(read_position))
                cookie = f"{COOKIE}={token}; {self.cookie_attributes}"
                headers = [
                    *message.get("headers", ()),
                    (b"set-cookie", cookie.encode("latin-1")),
                    (HEADER.encode("latin-1"), token.encode("latin-1")),
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_position)
        finally:
            _state.reset(reset)


async def _position_or_primary_only(read_position: Callable[[], Awaitable[int]]) -> int:
    try:
        return await read_position()
    except Exception as error:  # the write is committed: answer it, read on the primary
        logger.warning("could not read the primary's WAL position: %r", error)
        return PRIMARY_ONLY


def _token(scope: Scope) -> str | None:
    cookie_header: str | None = None
    for key, value in scope["headers"]:
        if key == HEADER.encode("latin-1"):
            return str(value.decode("latin-1"))
        if key == b"cookie":
            cookie_header = value.decode("latin-1")
    if cookie_header is None:
        return None
    return cookie_parser(cookie_header).get(COOKIE)
