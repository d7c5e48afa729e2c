"""`agora serve --workers 2` on PostgreSQL and Redis: nothing a request depends on lives in
one process. Login limits are shared through Redis, Idempotency-Key replays through the
database, whichever worker answers."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import coredis
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.members.builders import FAST_ARGON2
from tests.support.databases import TestDatabases, require_postgres, upgrade
from tests.support.pgcluster import free_port
from tests.support.workers import serving_workers

REDIS = ("127.0.0.1", 6379)
REDIS_DB = 7  # this test's own logical database, emptied at its start
PASSWORD = "correct horse battery"


def _redis_reason() -> str | None:
    try:
        with socket.create_connection(REDIS, timeout=0.5):
            return None
    except OSError as exc:
        return f"no Redis at {REDIS[0]}:{REDIS[1]} ({exc})"


def _worker_pids(directory: Path) -> set[str]:
    return {p.stem.rsplit("_", 1)[-1] for p in directory.glob("counter_*.db")}


def _sign_up(http: httpx.Client, name: str) -> tuple[int, dict[str, str]]:
    created = http.post(
        "/api/v1/users",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    login = http.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return created.json()["id"], {"Authorization": f"Bearer {login.json()['access_token']}"}


@contextmanager
def serving(env: dict[str, str], metrics_dir: Path) -> Iterator[httpx.Client]:
    with serving_workers(env, free_port()) as served:
        assert len(list(metrics_dir.glob("gauge_livesum_*.db"))) == 2
        # No keep-alive: every request is a new connection, so both workers get a share.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=served.base_url, limits=limits, timeout=30) as c:
            yield c


async def test_two_workers_share_login_limits_and_idempotency(
    databases: TestDatabases, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    reason = _redis_reason()
    if reason is not None:
        if require_postgres():  # CI provides Redis next to PostgreSQL
            pytest.fail(reason)
        pytest.skip(reason)
    url = await databases.fresh_url("postgresql")
    await upgrade(url)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {
        **subprocess_env,
        "AGORA_DATABASE_URL": url,
        "AGORA_POOL_SIZE": "3",
        "AGORA_REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{REDIS_DB}",
        "AGORA_LOGIN_LIMIT_PER_ACCOUNT": "3/minute",
        "AGORA_PASSWORD_HASH_MEMORY_KIB": str(FAST_ARGON2["memory_kib"]),
        "AGORA_PASSWORD_HASH_TIME_COST": str(FAST_ARGON2["time_cost"]),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    # Login budgets are counted per user id (1, 2, 3 again in each fresh database) and per
    # address: start from an empty Redis database of this test's own.
    await coredis.Redis(host=REDIS[0], port=REDIS[1], db=REDIS_DB).flushdb()
    name = f"w{uuid.uuid4().hex[:12]}"
    with serving(env, metrics_dir) as http:
        buyer_id, buyer = _sign_up(http, name)
        seller_id, seller = _sign_up(http, f"{name}s")
        conn = await asyncpg.connect(str(make_url(url).set(drivername="postgresql")))
        try:  # the seller also grants the buyer credits: a superuser
            await conn.execute('UPDATE "user" SET is_superuser = true WHERE id = $1', seller_id)
        finally:
            await conn.close()
        product = http.post(
            "/api/v1/products",
            json={"name": "Lamp", "category": "home", "price": "2.50", "stock": 10},
            headers=seller,
        )
        assert product.status_code == 201, product.text
        grant = http.post(
            "/api/v1/credits/grants", json={"to_user_id": buyer_id, "amount": "100"}, headers=seller
        )
        assert grant.status_code == 201, grant.text

        # The same order sent six times, answered by whichever worker: one order.
        order = {"items": [{"product_id": product.json()["id"], "quantity": 1}]}
        answers = [
            http.post("/api/v1/orders", json=order, headers={**buyer, "Idempotency-Key": name})
            for _ in range(6)
        ]
        assert [a.status_code for a in answers] == [201] * 6, answers[0].text
        assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None] + ["true"] * 5
        assert len({a.text for a in answers}) == 1
        stock = http.get(f"/api/v1/products/{product.json()['id']}").json()["stock"]
        assert stock == 9

        # Wrong passwords: an account's budget of 3 a minute holds across workers (with a
        # budget per process, up to 6 attempts would get a 401).
        target = f"{name}t"
        signed_up = http.post(
            "/api/v1/users",
            json={"email": f"{target}@example.com", "username": target, "password": PASSWORD},
        )
        assert signed_up.status_code == 201, signed_up.text
        codes = [
            http.post(
                "/api/v1/auth/token", data={"username": target, "password": "wrong pw!"}
            ).status_code
            for _ in range(8)
        ]
        assert codes == [401] * 3 + [429] * 5
        assert len(_worker_pids(metrics_dir)) == 2  # both workers answered requests
