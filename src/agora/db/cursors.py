"""Opaque, signed keyset cursors: a row's sort values, the direction, and the ordering.

A cursor is URL-safe JSON signed with HMAC (itsdangerous) under its own salt, so a token that
the same secret signed for another purpose is refused. Values are tagged so that types JSON
lacks (datetimes, dates, Decimals, UUIDs) come back exactly. Anything wrong with a cursor is an
`InvalidCursor` (400).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from itsdangerous import BadData, URLSafeSerializer

from agora.db.errors import InvalidCursor

MAX_CURSOR_LENGTH = 2048  # a cursor holds a few sort values; anything longer is not ours
CURSOR_SALT = "agora.db.pagination.cursor"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a cursor points: a row's sort values, the direction, and whether that row counts."""

    values: tuple[Any, ...]
    backwards: bool
    inclusive: bool = False


class CursorCodec:
    """Turns a `Position` into an opaque, URL-safe, signed string and back.

    The payload is JSON signed with HMAC (itsdangerous) under a salt of its own, so a token
    signed for something else with the same secret is not accepted as a cursor.
    """

    def __init__(self, secret: str, *, salt: str = CURSOR_SALT) -> None:
        self._serializer = URLSafeSerializer(secret, salt=salt)

    def encode(self, position: Position, fingerprint: str) -> str:
        values = [_encode_value(v) for v in position.values]
        payload = {"f": fingerprint, "b": position.backwards, "i": position.inclusive, "k": values}
        return self._serializer.dumps(payload)

    def decode(self, token: str, fingerprint: str, width: int) -> Position:
        if len(token) > MAX_CURSOR_LENGTH:
            raise InvalidCursor("The cursor is too long")
        try:
            payload = self._serializer.loads(token)
        except (BadData, ValueError, UnicodeError) as exc:
            raise InvalidCursor() from exc
        if not isinstance(payload, dict):
            raise InvalidCursor()
        if payload.get("f") != fingerprint:
            # Signed by us, but for another listing or ordering.
            raise InvalidCursor("The cursor belongs to another listing or ordering")
        values, backwards, inclusive = payload.get("k"), payload.get("b"), payload.get("i")
        if not (isinstance(values, list) and len(values) == width):
            raise InvalidCursor()
        if not (isinstance(backwards, bool) and isinstance(inclusive, bool)):
            raise InvalidCursor()
        return Position(tuple(_decode_value(v) for v in values), backwards, inclusive)


# Tagged values, so that types JSON lacks (datetimes, Decimals, ...) come back exactly.
def _encode_value(value: Any) -> list[Any]:
    if value is None:
        return ["n"]
    # bool before int (bool is an int); int(), str() drop subclasses such as enums.
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", int(value)]
    if isinstance(value, float):
        return ["f", float(value)]
    if isinstance(value, str):
        return ["s", str(value)]
    if isinstance(value, datetime):
        return ["dt", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, Decimal):
        return ["dec", str(value)]
    if isinstance(value, UUID):
        return ["u", str(value)]
    raise TypeError(f"cannot put a {type(value).__name__} sort value in a cursor")


_DECODERS: dict[str, tuple[type, Any]] = {
    "b": (bool, bool),
    "i": (int, int),
    "f": (float, float),
    "s": (str, str),
    "dt": (str, datetime.fromisoformat),
    "d": (str, date.fromisoformat),
    "dec": (str, Decimal),
    "u": (str, UUID),
}


def _decode_value(item: Any) -> Any:
    if item == ["n"]:
        return None
    if not (isinstance(item, list) and len(item) == 2 and item[0] in _DECODERS):
        raise InvalidCursor()
    expected, parse = _DECODERS[item[0]]
    if type(item[1]) is not expected and not (expected is float and type(item[1]) is int):
        raise InvalidCursor()
    try:
        return parse(item[1])
    except (ValueError, InvalidOperation) as exc:
        raise InvalidCursor() from exc
