"""A cap on request bodies: 413 `PayloadTooLarge` past `AGORA_MAX_BODY_BYTES`.

A pure ASGI middleware (no buffering): a `Content-Length` over the cap is refused before the
app runs; a body without one (chunked) is counted as it streams, and the request is refused
as soon as it passes the cap. Refusing means answering 413 when the app has not started its
response yet, which is always the case for this service (every endpoint reads its whole body
before answering).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agora.db.api import ErrorResponse, error_response

NAME = "PayloadTooLarge"
_HTTP1 = ("1.0", "1.1")


class BodyTooLarge(HTTPException):
    """Raised inside `receive` when a streamed body passes the cap.

    An `HTTPException`, because FastAPI turns any other exception raised while it reads a body
    into a 400; the handler below renders it like every other error.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over the limit of {max_bytes} bytes")


async def _body_too_large(_request: Request, exc: Exception) -> ErrorResponse:
    assert isinstance(exc, BodyTooLarge)
    return error_response(413, NAME, exc.detail, {"Connection": "close"})


def install_body_limit(app: FastAPI, *, max_bytes: int) -> None:
    """Cap request bodies at `max_bytes` (413 past it)."""
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        if declared is not None or (not chunked and scope.get("http_version") in _HTTP1):
            # The server reads exactly `Content-Length` bytes; an HTTP/1 request with neither
            # header has no body at all. Nothing to count (the common case: every GET).
            await self.app(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # read by a route outside FastAPI's exception handling
            if started:  # too late for a status; the connection is cut
                raise
            response = await _body_too_large(Request(scope), exc)
            await response(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await _body_too_large(Request(scope), BodyTooLarge(self.max_bytes))
        await response(scope, receive, send)


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared `Content-Length` (None: absent or malformed) and whether the body is
    chunked (`Transfer-Encoding`)."""
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None, True  # malformed: the server rejects it; here the body is counted
        elif name == b"transfer-encoding":
            chunked = True
    if chunked:  # both headers: Transfer-Encoding wins (RFC 9112, 6.3); count what comes
        return None, True
    return length, False
