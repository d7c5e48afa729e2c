"""Read replicas against real engines: a throwaway primary and its streaming replica.

One scenario, in order, because building the pair (initdb, migrations, pg_basebackup) is
the expensive part: routing, read-your-writes with replay paused on the replica, fallback to
the primary when the replica stops, and return to the replica when it is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import text

from agora.app import create_app
from agora.config import Settings
from agora.db.api import ReadUoW
from agora.db.readyourwrites import HEADER
from tests.members.conftest import fast_settings
from tests.support import pgcluster
from tests.support.databases import upgrade
from tests.test_observability import sample

PASSWORD = "correct horse battery"


@asynccontextmanager
async def clients(app: FastAPI, count: int) -> AsyncIterator[list[AsyncClient]]:
    """`count` clients of one running app, each with its own cookie jar (its own user)."""
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        opened = [AsyncClient(transport=transport, base_url="http://test") for _ in range(count)]
        try:
            yield opened
        finally:
            for client in opened:
                await client.aclose()


async def reads(client: AsyncClient, target: str) -> float:
    """How many read-only units of work ran on `target` ("primary", "replica-1")."""
    body = (await client.get("/metrics")).text
    return sample(body, "db_reads_total", pool=target) or 0.0


async def healthy(client: AsyncClient) -> float | None:
    return sample((await client.get("/metrics")).text, "db_replica_healthy", pool="replica-1")


async def eventually(check: object, timeout: float = 30.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def sign_up_and_log_in(client: AsyncClient, name: str) -> dict[str, str]:
    created = await client.post(
        "/api/v1/users",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    token = await client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def replica_settings(primary: str, replica: str) -> Settings:
    return fast_settings(primary, database_replica_urls=replica, replica_poll_interval=0.1)


async def test_reads_go_to_the_replica_writes_to_the_primary_and_writers_read_their_writes(
    cluster_dir: Path,
) -> None:
    with pgcluster.throwaway_cluster(cluster_dir / "primary") as primary:
        primary.psql("CREATE DATABASE agora")
        await upgrade(primary.url("agora"))
        with primary.replica(cluster_dir / "replica") as replica:
            await asyncio.to_thread(
                pgcluster.wait_until,
                lambda: replica.psql("SELECT count(*) FROM alembic_version", "agora") == "1",
            )
            app = create_app(replica_settings(primary.url("agora"), replica.url("agora")))

            @app.get("/slow-read")
            async def slow_read(uow: ReadUoW) -> dict[str, str]:
                await uow.session.execute(text("SELECT pg_sleep(30)"))
                return {"status": "done"}

            async with clients(app, 2) as (writer, other):
                await _scenario(writer, other, replica)
            await _closed_pooled_connections_are_not_used(primary, replica)


async def _scenario(writer: AsyncClient, other: AsyncClient, replica: pgcluster.Cluster) -> None:
    # The first probe ran at startup: the replica is in rotation before the first request.
    assert await healthy(other) == 1
    assert (await other.get("/health/ready")).json()["replicas"] == {"replica-1": "ok"}
    auth = await sign_up_and_log_in(writer, "writer")  # writes: they ran on the primary

    # Routing: a client that has not written reads on the replica.
    before = await reads(other, "replica-1"), await reads(other, "primary")
    listing = await other.get("/api/v1/posts")
    assert listing.status_code == 200
    assert (await reads(other, "replica-1"), await reads(other, "primary")) == (
        before[0] + 1,
        before[1],
    )

    # Read-your-writes: with replay paused the replica cannot have the new post.
    replica.psql("SELECT pg_wal_replay_pause()")
    created = await writer.post("/api/v1/posts", json={"title": "Fresh news"}, headers=auth)
    assert created.status_code == 201, created.text
    assert created.headers[HEADER]  # the position, also set as a cookie
    post = f"/api/v1/posts/{created.json()['id']}"

    on_primary = await reads(other, "primary")
    mine = await writer.get(post)  # carries the cookie
    assert mine.status_code == 200
    assert mine.json()["title"] == "Fresh news"
    assert await reads(other, "primary") == on_primary + 1

    stale = await other.get(post)  # no token: the (stale) replica answers
    assert stale.status_code == 404
    forged = await other.get(post, headers={HEADER: "0.forged.signature"})
    assert forged.status_code == 404  # a token that does not verify is ignored
    echoed = await other.get(post, headers={HEADER: created.headers[HEADER]})
    assert echoed.status_code == 200  # clients without cookies echo the header

    replica.psql("SELECT pg_wal_replay_resume()")

    async def caught_up() -> bool:
        return (await other.get(post)).status_code == 200

    await eventually(caught_up)

    # A replica connection lost in the middle of a read: that request is a 503, not a 500.
    slow = asyncio.create_task(other.get("/slow-read"))
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
    await asyncio.to_thread(pgcluster.wait_until, lambda: replica.psql(sleeping) == "1")
    replica.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
    )
    lost = await asyncio.wait_for(slow, timeout=20)
    assert lost.status_code == 503, lost.text
    assert lost.json()["error"] == "DatabaseUnavailable"
    assert (await other.get(post)).status_code == 200  # and the next read is answered

    # Fallback: with the replica stopped every read is answered, from the primary.
    await asyncio.to_thread(replica.stop)
    statuses = []

    async def on_the_primary() -> bool:
        response: Response = await other.get(post)
        statuses.append(response.status_code)
        return response.status_code == 200 and await healthy(other) == 0

    await eventually(on_the_primary, timeout=10)
    ready = await other.get("/health/ready")  # the primary is up: ready, replica skipped
    assert ready.status_code == 200
    assert ready.json()["replicas"] == {"replica-1": "skipped"}
    assert set(statuses) == {200}, statuses  # a closed pooled connection is never used
    before = await reads(other, "replica-1"), await reads(other, "primary")
    for _ in range(3):
        assert (await other.get(post)).status_code == 200
    assert (await reads(other, "replica-1"), await reads(other, "primary")) == (
        before[0],
        before[1] + 3,
    )

    # Return: once a probe reaches the replica again, reads go back to it.
    await asyncio.to_thread(replica.start)

    async def back_in_rotation() -> bool:
        return await healthy(other) == 1

    await eventually(back_in_rotation)
    before_replica = await reads(other, "replica-1")
    assert (await other.get(post)).status_code == 200
    assert await reads(other, "replica-1") == before_replica + 1


async def _closed_pooled_connections_are_not_used(
    primary: pgcluster.Cluster, replica: pgcluster.Cluster
) -> None:
    """The replica's server closes the app's idle pooled connections (a restart, an admin's
    pg_terminate_backend): the next read takes a new connection to the replica rather than
    failing on a dead one. No probe runs meanwhile (60 s interval), so only the checkout
    check can tell."""
    settings = fast_settings(
        primary.url("agora"),
        database_replica_urls=replica.url("agora"),
        replica_poll_interval=60,
        pool_size=2,
    )
    app = create_app(settings)
    async with clients(app, 1) as (http,):
        assert (await http.get("/api/v1/posts")).status_code == 200
        replica.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'agora-replica'"
        )
        await asyncio.sleep(0.3)  # the client notices the closed sockets
        before = await reads(http, "replica-1")
        answers = [(await http.get("/api/v1/posts")).status_code for _ in range(3)]
        assert answers == [200, 200, 200]
        assert await reads(http, "replica-1") == before + 3
