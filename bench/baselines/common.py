"""What both baselines share: the access-token check and the JSON rendering.

The token check is Agora's own rule (HS256 with a key derived for access tokens, `exp`,
`iat`, `sub`, `jti` required, `sub` a positive integer), written with PyJWT directly.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import jwt
import orjson
from starlette.responses import Response


def token_key() -> bytes:
    secret = os.environ["BENCH_SECRET_KEY"]
    return hmac.new(secret.encode(), b"agora/access-token", hashlib.sha256).digest()


def user_id_from(authorization: str | None, key: bytes) -> int | None:
    if not authorization or not authorization.startswith("Bearer "):
        return None
    try:
        claims = jwt.decode(
            authorization[7:],
            key,
            algorithms=["HS256"],
            options={"require": ["exp", "iat", "sub", "jti"]},
        )
    except jwt.PyJWTError:
        return None
    sub = claims["sub"]
    return int(sub) if isinstance(sub, str) and sub.isascii() and sub.isdigit() else None


def cents(value: int) -> str:
    sign = "-" if value < 0 else ""
    units, rest = divmod(abs(value), 100)
    return f"{sign}{units}.{rest:02d}"


def json(content: Any, status_code: int = 200) -> Response:
    # OPT_UTC_Z: "...Z" for UTC, as Agora's (pydantic's) rendering.
    return Response(
        orjson.dumps(content, option=orjson.OPT_UTC_Z),
        status_code=status_code,
        media_type="application/json",
    )


def error(status_code: int, name: str, detail: str) -> Response:
    return json({"error": name, "detail": detail}, status_code)


def user_view(row: Any, *, private: bool) -> dict[str, Any]:
    """A user row (user columns + profile columns prefixed `p_`) in Agora's JSON shape."""
    profile = (
        None
        if row["p_updated_at"] is None
        else {
            "bio": row["p_bio"],
            "avatar_url": row["p_avatar_url"],
            "location": row["p_location"],
            "updated_at": row["p_updated_at"],
        }
    )
    view: dict[str, Any] = {
        "id": row["id"],
        "username": row["username"],
        "full_name": row["full_name"],
        "created_at": row["created_at"],
        "profile": profile,
    }
    if private:
        view |= {
            "email": row["email"],
            "status": row["status"],
            "credits": cents(row["credits"]),
            "is_superuser": bool(row["is_superuser"]),
        }
    return view


USER_SELECT = (
    "SELECT u.id, u.username, u.full_name, u.created_at, u.email, u.status, u.credits, "
    "u.is_superuser, p.bio AS p_bio, p.avatar_url AS p_avatar_url, p.location AS p_location, "
    'p.updated_at AS p_updated_at FROM "user" u LEFT JOIN user_profile p ON p.user_id = u.id '
    "WHERE u.id = {param} AND u.deleted_at IS NULL"
)
