from __future__ import annotations

import subprocess
import sys

import pytest

from agora.config import DEFAULT_SECRET_KEY, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("AGORA_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir("/")  # no stray .env file


def test_defaults_to_a_local_sqlite_file() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///./agora.db"
    assert settings.is_sqlite
    assert settings.env == "development"
    # Pre-ping would add a round trip to every request (see the one-round-trip test).
    assert settings.pool_pre_ping is False


@pytest.mark.parametrize(
    "given",
    [
        "postgres://u:p@db:5432/agora",
        "postgresql://u:p@db:5432/agora",
        "postgresql+asyncpg://u:p@db:5432/agora",
    ],
)
def test_postgres_urls_switch_to_asyncpg(given: str) -> None:
    settings = load_settings(database_url=given)
    assert settings.database_url == "postgresql+asyncpg://u:p@db:5432/agora"
    assert settings.masked_database_url() == "postgresql+asyncpg://u:***@db:5432/agora"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGORA_POOL_SIZE", "3")
    monkeypatch.setenv("AGORA_ECHO_SQL", "true")
    settings = load_settings()
    assert settings.pool_size == 3
    assert settings.echo_sql is True
    monkeypatch.setenv("AGORA_OPENTELEMETRY", "OFF")
    assert load_settings().opentelemetry == "off"


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("AGORA_POOL_SIZE", "lots", "AGORA_POOL_SIZE"),
        ("AGORA_POOL_SIZE", "0", "AGORA_POOL_SIZE"),
        ("AGORA_DATABASE_URL", "mysql://x/y", "AGORA_DATABASE_URL"),
        ("AGORA_ENV", "staging", "AGORA_ENV"),
        ("AGORA_OPENTELEMETRY", "maybe", "AGORA_OPENTELEMETRY"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=needle):
        load_settings()


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(SettingsError, match="AGORA_SECRET_KEY"):
        load_settings(env="production")
    with pytest.raises(SettingsError, match="AGORA_SECRET_KEY"):
        load_settings(env="production", secret_key="short")
    ok = load_settings(env="production", secret_key="x" * 40)
    assert ok.secret_key.get_secret_value() != DEFAULT_SECRET_KEY


def test_secret_is_not_shown_in_repr() -> None:
    settings = Settings(secret_key="super-secret-value")
    assert "super-secret-value" not in repr(settings)


def test_cli_reports_bad_settings_in_one_line_without_traceback() -> None:
    env = {"AGORA_POOL_SIZE": "lots", "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "agora", "db", "current"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "AGORA_POOL_SIZE" in lines[0]
