"""`agora users create-superuser`: creates, promotes, or leaves as is."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from agora.cli import app
from agora.db.engine import make_engine
from agora.models.user import User
from tests.members.builders import FAST_ARGON2

PREFIX = "cli_"


ADMIN_PASSWORD = "admin password 1"


def _run(
    database_url: str,
    *args: str,
    password: str | None = ADMIN_PASSWORD,
    stdin: str | None = None,
) -> tuple[int, str]:
    env = {
        "AGORA_ENV": "test",
        "AGORA_DATABASE_URL": database_url,
        "AGORA_PASSWORD_HASH_MEMORY_KIB": str(FAST_ARGON2["memory_kib"]),
        "AGORA_PASSWORD_HASH_TIME_COST": str(FAST_ARGON2["time_cost"]),
        "AGORA_SUPERUSER_PASSWORD": password or "",
    }
    result = CliRunner().invoke(app, ["users", "create-superuser", *args], env=env, input=stdin)
    return result.exit_code, result.output


async def _rows(database_url: str, statement: object) -> list[tuple[object, ...]]:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(statement)  # type: ignore[call-overload]
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        await engine.dispose()


@pytest.fixture
def cli_db(database_url: str) -> Iterator[str]:
    """The migrated database, with the users this test commits deleted afterwards."""
    yield database_url
    asyncio.run(_rows(database_url, delete(User).where(User.username.like(f"{PREFIX}%"))))


def _superusers(url: str) -> list[tuple[object, ...]]:
    return asyncio.run(
        _rows(
            url,
            select(User.username, User.email, User.is_superuser, User.hashed_password)
            .where(User.username.like(f"{PREFIX}%"))
            .order_by(User.username),
        )
    )


def test_create_then_idempotent(cli_db: str) -> None:
    args = ("--email", "Root@Example.com", "--username", f"{PREFIX}root")
    code, out = _run(cli_db, *args)
    assert code == 0, out
    assert "Created superuser cli_root <root@example.com>" in out
    [(name, email, is_superuser, hashed)] = _superusers(cli_db)
    assert (name, email, is_superuser) == (f"{PREFIX}root", "root@example.com", True)
    assert str(hashed).startswith("$argon2id$")

    code, out = _run(cli_db, *args, password=None)  # no password needed the second time
    assert code == 0, out
    assert "already a superuser; nothing changed" in out
    assert _superusers(cli_db)[0][3] == hashed


def test_an_existing_user_is_promoted(cli_db: str) -> None:
    assert _run(cli_db, "--email", "a@example.com", "--username", f"{PREFIX}a")[0] == 0
    asyncio.run(
        _rows(
            cli_db,
            update(User).values(is_superuser=False).where(User.username == f"{PREFIX}a"),
        )
    )
    code, out = _run(
        cli_db, "--email", "other@example.com", "--username", f"{PREFIX}a", password=None
    )
    assert code == 0, out
    assert "Promoted cli_a <a@example.com> to superuser" in out
    assert _superusers(cli_db)[0][2] is True


def test_the_password_is_prompted_with_confirmation(cli_db: str) -> None:
    code, out = _run(
        cli_db,
        "--email",
        "p@example.com",
        "--username",
        f"{PREFIX}p",
        password=None,
        stdin="prompted password\nprompted password\n",
    )
    assert code == 0, out
    assert "Created superuser" in out


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (("--email", "bad", "--username", f"{PREFIX}x"), "admin password 1", "email"),
        (("--email", "x@example.com", "--username", "Bad Name!"), "admin password 1", "username"),
        (("--email", "x@example.com", "--username", f"{PREFIX}x"), "short", "password"),
    ],
)
def test_invalid_input_is_refused(
    cli_db: str, args: tuple[str, ...], password: str, message: str
) -> None:
    code, out = _run(cli_db, *args, password=password)
    assert code == 2, out
    assert "invalid input" in out
    assert message in out
    assert _superusers(cli_db) == []
