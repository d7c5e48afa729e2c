"""Migrations: a single head, up -> down to base -> up, and no drift, on both databases."""

from __future__ import annotations

import subprocess
import sys

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from agora.db.engine import make_engine
from agora.migrate import alembic_config
from tests.support.databases import TestDatabases, downgrade, upgrade


def test_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite:///unused.db"))
    assert len(script.get_heads()) == 1


async def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(backend: str, databases: TestDatabases) -> None:
    url = await databases.fresh_url(backend)
    await upgrade(url)
    at_head = await _tables(url)
    assert "alembic_version" in at_head
    await downgrade(url, "base")
    assert await _tables(url) <= {"alembic_version"}
    await upgrade(url)
    assert await _tables(url) == at_head


def test_cli_check_reports_no_drift(database_url: str, subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "AGORA_DATABASE_URL": database_url}
    proc = subprocess.run(
        [sys.executable, "-m", "agora", "db", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "No drift" in proc.stdout


def test_cli_sql_prints_offline_sql(subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "AGORA_DATABASE_URL": "postgresql://u@h/db"}
    proc = subprocess.run(
        [sys.executable, "-m", "agora", "db", "sql"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CREATE TABLE alembic_version" in proc.stdout
