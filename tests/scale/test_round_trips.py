"""Routing reads to a replica costs the request nothing: still one round trip per SELECT,
and no health query on the request (health comes from the background probe)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import make_url

from agora.db.engine import make_engine
from agora.db.replicas import ReplicaSet
from agora.db.session import Database
from tests.support.pgproxy import RoundTripProxy


async def test_a_read_on_a_replica_is_one_round_trip(pg_database_url: str) -> None:
    server = make_url(pg_database_url)
    # The shared server stands in for a replica, behind a proxy that counts round trips.
    proxy = RoundTripProxy(server.host or "127.0.0.1", server.port or 5432)
    async with proxy.running():
        replica_url = server.set(host="127.0.0.1", port=proxy.port)
        replicas = ReplicaSet(
            [make_engine(replica_url, pool_size=1, max_overflow=0, connect_args={"ssl": False})]
        )
        db = Database(make_engine(pg_database_url, pool_size=1, max_overflow=0), replicas=replicas)
        try:
            await replicas.probe_all()  # what the background task does; no task here
            assert replicas.replicas[0].healthy
            async with db.uow(read_only=True) as uow:  # warm up: prepare the statement
                await uow.session.execute(text("SELECT 1"))
            before = proxy.round_trips
            for _ in range(3):
                async with db.uow(read_only=True) as uow:
                    assert (await uow.session.execute(text("SELECT 1"))).scalar_one() == 1
            assert proxy.round_trips - before == 3
            before = proxy.round_trips
            async with db.uow() as uow:  # writes never touch the replica
                await uow.session.execute(text("SELECT 1"))
            assert proxy.round_trips == before
        finally:
            await db.dispose()
