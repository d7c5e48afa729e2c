"""Passwords (Argon2id) and access tokens (HS256), without HTTP."""

from __future__ import annotations

import base64
import json
import time
import warnings
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from agora.config import Settings, SettingsError, load_settings
from agora.members.deps import Members
from agora.members.errors import InvalidToken
from agora.members.security import Passwords, Tokens, TokenSubject

SECRET = "s" * 40


async def test_production_parameters_are_owasps_argon2id() -> None:
    members = Members.from_settings(Settings())
    hashed = await members.passwords.hash("correct horse battery")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await members.passwords.verify("correct horse battery", hashed) == (True, None)
    assert (await members.passwords.verify("wrong horse battery", hashed))[0] is False


def test_production_refuses_weaker_argon2() -> None:
    strong_key = "k" * 40
    load_settings(env="production", secret_key=strong_key)
    with pytest.raises(SettingsError, match="OWASP"):
        load_settings(env="production", secret_key=strong_key, password_hash_memory_kib=64)
    with pytest.raises(SettingsError, match="OWASP"):
        load_settings(env="production", secret_key=strong_key, password_hash_time_cost=1)


def test_rate_limit_and_redis_settings_are_validated() -> None:
    with pytest.raises(SettingsError, match="AGORA_LOGIN_LIMIT_PER_ACCOUNT"):
        load_settings(login_limit_per_account="lots")
    with pytest.raises(SettingsError, match="AGORA_REDIS_URL"):
        load_settings(redis_url="http://127.0.0.1:6379")


async def test_changed_parameters_trigger_a_rehash() -> None:
    old = Passwords(memory_kib=64, time_cost=1, parallelism=1)
    new = Passwords(memory_kib=128, time_cost=2, parallelism=1)
    hashed = await old.hash("correct horse battery")
    ok, updated = await new.verify("correct horse battery", hashed)
    assert ok
    assert updated is not None
    assert updated.startswith("$argon2id$v=19$m=128,t=2,p=1$")
    assert await new.verify("correct horse battery", updated) == (True, None)


async def test_an_unknown_hash_format_does_not_verify() -> None:
    passwords = Passwords(memory_kib=64, time_cost=1, parallelism=1)
    assert await passwords.verify("x" * 10, "plaintext") == (False, None)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_token_round_trips_and_carries_the_claims() -> None:
    tokens = Tokens(SECRET, ttl=timedelta(minutes=5))
    issued = tokens.issue(42)
    assert issued.expires_in == 300
    assert tokens.user_id(issued.token) == 42
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(claims) == {"sub", "ver", "iat", "exp", "jti"}
    assert claims["ver"] == 0
    assert jwt.get_unverified_header(issued.token)["alg"] == "HS256"


def _hs512(claims: dict[str, object], key: bytes) -> str:
    # The same key with an algorithm the decoder does not allow (PyJWT warns about the key
    # length for SHA-512; irrelevant to a forgery).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(claims, key, algorithm="HS512")


def _forgeries(tokens: Tokens) -> dict[str, str]:
    now = datetime.now(UTC)
    good = tokens.issue(1).token
    assert tokens.user_id(good) == 1  # checked, so remembered: what follows must not be
    key = tokens._key
    head, body, sig = good.split(".")
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{body}.",
        "expired": jwt.encode(
            {
                "sub": "1",
                "iat": now - timedelta(hours=2),
                "exp": now - timedelta(hours=1),
                "jti": "x",
            },
            key,
            algorithm="HS256",
        ),
        "missing exp": jwt.encode({"sub": "1", "iat": now, "jti": "x"}, key, algorithm="HS256"),
        "missing sub": jwt.encode(
            {"iat": now, "exp": now + timedelta(minutes=5), "jti": "x"}, key, algorithm="HS256"
        ),
        "bad signature": f"{head}.{body}.{sig[:-4]}AAAA",
        "tampered payload": f"{head}.{_b64({'sub': '2', 'iat': 1, 'exp': 2**32})}.{sig}",
        "foreign secret": Tokens("f" * 40, ttl=timedelta(minutes=5)).issue(1).token,
        "other algorithm": _hs512(
            {"sub": "1", "iat": now, "exp": now + timedelta(minutes=5), "jti": "x"}, key
        ),
        "sub out of range": jwt.encode(
            {"sub": str(2**31), "iat": now, "exp": now + timedelta(minutes=5), "jti": "x"},
            key,
            algorithm="HS256",
        ),
        "sub not a number": jwt.encode(
            {"sub": "admin", "iat": now, "exp": now + timedelta(minutes=5), "jti": "x"},
            key,
            algorithm="HS256",
        ),
        "garbage": "not.a.token",
        "huge": "a" * 10_000,
    }


@pytest.mark.parametrize(
    "kind",
    list(_forgeries(Tokens(SECRET, ttl=timedelta(minutes=5)))),
)
def test_forged_tokens_are_refused(kind: str) -> None:
    tokens = Tokens(SECRET, ttl=timedelta(minutes=5))
    with pytest.raises(InvalidToken):
        tokens.user_id(_forgeries(tokens)[kind])


def test_a_remembered_token_still_expires() -> None:
    tokens = Tokens(SECRET, ttl=timedelta(seconds=2))
    token = tokens.issue(7).token
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]  # whole seconds
    assert tokens.user_id(token) == 7  # checked in full, then remembered
    assert tokens.user_id(token) == 7
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(InvalidToken):
        tokens.user_id(token)


def test_a_token_carries_the_token_version() -> None:
    tokens = Tokens(SECRET, ttl=timedelta(minutes=5))
    assert tokens.subject(tokens.issue(7, version=3).token) == TokenSubject(7, 3)
    assert tokens.subject(tokens.issue(7).token) == TokenSubject(7, 0)
    now = datetime.now(UTC)
    claims = {"sub": "7", "iat": now, "exp": now + timedelta(minutes=5), "jti": "x"}
    older = jwt.encode(claims, tokens._key, algorithm="HS256")  # issued before versions
    assert tokens.subject(older) == TokenSubject(7, 0)
    for bad in ("1", -1, True, 1.5, 2**31, None):
        forged = jwt.encode(claims | {"ver": bad}, tokens._key, algorithm="HS256")
        with pytest.raises(InvalidToken):
            tokens.subject(forged)
