"""Migrations: a single head, up -> down to base -> up (empty, and with data in every table),
0005's refusal to drop ledger adjustments, and no drift, on both databases."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import func, inspect, select, text

import agora.models  # noqa: F401 - every table in the metadata
from agora.app import create_app
from agora.config import Settings
from agora.db.base import Base
from agora.db.engine import make_engine
from agora.db.session import Database
from agora.migrate import alembic_config
from agora.models.user import User
from tests.members.builders import auth, make_user
from tests.members.conftest import fast_settings
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


async def _fill_every_table(url: str) -> dict[str, int]:
    """Rows in every table, made through the API as users would; the row count per table."""
    engine = make_engine(url)
    try:
        database = Database(engine)
        async with database.uow() as uow:
            admin = await make_user(uow, username="admin", is_superuser=True)
            seller, buyer = await make_user(uow), await make_user(uow)
        app = create_app(fast_settings(url), database=database)
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            await _fill_through_the_api(http, fast_settings(url), admin, seller, buyer)
        async with engine.connect() as conn:
            counts = {}
            for table in Base.metadata.sorted_tables:  # a new table cannot be missed
                counts[table.name] = int(
                    await conn.scalar(select(func.count()).select_from(table)) or 0
                )
            return counts
    finally:
        await engine.dispose()


async def _fill_through_the_api(
    http: AsyncClient, settings: Settings, admin: User, seller: User, buyer: User
) -> None:
    def ok(response: Response) -> Any:
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    ok(
        await http.post(
            "/api/v1/credits/grants",
            json={"to_user_id": buyer.id, "amount": "50.00"},
            headers=auth(settings, admin),
        )
    )
    ok(
        await http.put(
            f"/api/v1/users/{seller.id}/profile",
            json={"bio": "sells things"},
            headers=auth(settings, seller),
        )
    )
    product = ok(
        await http.post(
            "/api/v1/products",
            json={"name": "anvil", "category": "tools", "price": "5.00", "stock": 3},
            headers=auth(settings, seller),
        )
    )
    order = ok(
        await http.post(
            "/api/v1/orders",
            json={"items": [{"product_id": product["id"], "quantity": 1}]},
            headers=auth(settings, buyer) | {"Idempotency-Key": "migrate-0001"},
        )
    )
    ok(await http.post(f"/api/v1/orders/{order['id']}/pay", headers=auth(settings, buyer)))
    ok(
        await http.post(
            "/api/v1/posts",
            json={"title": "Hello", "content": "first", "tags": ["news"]},
            headers=auth(settings, seller),
        )
    )


async def test_down_to_base_and_up_again_with_data_in_every_table(
    backend: str, databases: TestDatabases, subprocess_env: dict[str, str]
) -> None:
    url = await databases.fresh_url(backend)
    await upgrade(url)
    counts = await _fill_every_table(url)
    assert all(counts.values()), f"tables left empty: {[t for t, n in counts.items() if not n]}"
    at_head = await _tables(url)
    await downgrade(url, "base")
    assert await _tables(url) <= {"alembic_version"}
    await upgrade(url)
    assert await _tables(url) == at_head
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agora", "db", "check"],
        env={**subprocess_env, "AGORA_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "No drift" in proc.stdout


async def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            return None if revision is None else str(revision)
    finally:
        await engine.dispose()


async def test_0005_refuses_to_downgrade_while_adjustments_exist(
    backend: str, databases: TestDatabases
) -> None:
    url = await databases.fresh_url(backend)
    await upgrade(url)
    engine = make_engine(url)
    try:
        database = Database(engine)
        async with database.uow() as uow:
            admin = await make_user(uow, username="admin", is_superuser=True)
            member = await make_user(uow)
        app = create_app(fast_settings(url), database=database)
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.patch(
                f"/api/v1/users/{member.id}",
                json={"credits": "7.00"},
                headers=auth(fast_settings(url), admin),
            )
            assert response.status_code == 200, response.text
    finally:
        await engine.dispose()
    await downgrade(url, "0005")  # the later revisions hold nothing that stops them
    with pytest.raises(RuntimeError, match="1 adjustment rows"):
        await downgrade(url, "0004")
    assert await _revision(url) == "0005"  # nothing was downgraded
    assert "credit_transfer" in await _tables(url)
