"""`BodySizeLimit` at the ASGI level: which requests are counted as they stream."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from agora.bodylimit import BodySizeLimit

CAP = 10


async def _echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads the whole body, then answers 200 with its length."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def _call(http_version: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> Any:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers,
             "http_version": http_version, "query_string": b""}  # fmt: skip
    pending = list(chunks)
    sent: list[Message] = []

    async def receive() -> Message:
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    await BodySizeLimit(_echo_length, max_bytes=CAP)(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]


@pytest.mark.parametrize(
    ("version", "headers"),
    [
        ("1.1", [(b"transfer-encoding", b"chunked")]),
        ("2", []),  # HTTP/2 frames a body without either header
        ("1.1", [(b"content-length", b"x")]),  # malformed: counted, not trusted
    ],
    ids=["chunked", "http2", "malformed-length"],
)
async def test_bodies_without_a_trusted_length_are_counted(
    version: str, headers: list[tuple[bytes, bytes]]
) -> None:
    status, _ = await _call(version, headers, [b"x" * 6, b"x" * 6])
    assert status == 413
    assert await _call(version, headers, [b"x" * 4, b"x" * 4]) == (200, b"8")


async def test_a_declared_length_is_checked_up_front() -> None:
    status, body = await _call("1.1", [(b"content-length", b"11")], [b"x" * 11])
    assert status == 413
    assert b"PayloadTooLarge" in body
    assert await _call("1.1", [(b"content-length", b"10")], [b"x" * 10]) == (200, b"10")
    assert await _call("1.1", [], []) == (200, b"0")  # HTTP/1 without either header: no body
