"""Scale-out settings and the routing rules, without a server: what an operator sees when a
setting is wrong, which replica a read is sent to, and the read-your-writes token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agora.config import SettingsError, load_settings
from agora.db.engine import make_engine
from agora.db.readyourwrites import PRIMARY_ONLY, PositionSigner
from agora.db.replicas import ReplicaSet

PG = "postgresql://agora@db-{}.internal:5432/agora"


def test_replica_urls_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGORA_DATABASE_URL", PG.format("primary"))
    monkeypatch.setenv("AGORA_DATABASE_REPLICA_URLS", f"{PG.format(1)}, {PG.format(2)}")
    settings = load_settings()
    assert settings.database_replica_urls == (
        "postgresql+asyncpg://agora@db-1.internal:5432/agora",
        "postgresql+asyncpg://agora@db-2.internal:5432/agora",
    )


def test_replicas_with_a_sqlite_database_are_refused_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGORA_DATABASE_URL", "sqlite:///./agora.db")
    monkeypatch.setenv("AGORA_DATABASE_REPLICA_URLS", PG.format(1))
    with pytest.raises(SettingsError, match="AGORA_DATABASE_REPLICA_URLS needs a PostgreSQL"):
        load_settings()


def test_a_replica_url_that_is_not_postgresql_is_refused() -> None:
    with pytest.raises(SettingsError, match="AGORA_DATABASE_REPLICA_URLS: read replicas must"):
        load_settings(
            database_url=PG.format("primary"), database_replica_urls="sqlite:///replica.db"
        )


@pytest.fixture
async def replicas() -> AsyncIterator[ReplicaSet]:
    # Engines connect lazily: nothing here reaches a server.
    replica_set = ReplicaSet([make_engine(PG.format(n)) for n in (1, 2)])
    yield replica_set
    await replica_set.dispose()


async def test_reads_take_turns_over_healthy_replicas_that_have_replayed_enough(
    replicas: ReplicaSet,
) -> None:
    first, second = replicas.replicas
    assert replicas.choose() is None  # before the first probe: the primary
    first.healthy, first.replay_lsn = True, 100
    second.healthy, second.replay_lsn = True, 200
    turns = [replicas.choose() for _ in range(4)]
    assert turns[0] is not turns[1]  # round robin: each replica every other read
    assert turns[0:2] == turns[2:4]
    assert set(turns) == {first, second}
    assert {replicas.choose(150) for _ in range(4)} == {second}  # read-your-writes
    assert replicas.choose(201) is None  # nobody has the write yet: the primary
    replicas.mark_unhealthy(second, ConnectionRefusedError())
    assert {replicas.choose() for _ in range(4)} == {first}


def test_a_write_position_token_verifies_only_unaltered_and_fresh() -> None:
    signer = PositionSigner("k" * 32, max_age=30)
    token = signer.sign(0x16B3748)
    assert signer.verify(token) == 0x16B3748
    assert signer.verify(signer.sign(PRIMARY_ONLY)) == PRIMARY_ONLY
    assert signer.verify(token.replace("16b3748", "16b3749")) is None  # a moved position
    assert PositionSigner("another secret" * 3, max_age=30).verify(token) is None
    assert signer.verify("garbage") is None
    assert signer.verify(None) is None


def test_an_old_write_position_token_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = PositionSigner("k" * 32, max_age=30)
    token = signer.sign(42)
    real_time = signer._signer.get_timestamp()
    monkeypatch.setattr(signer._signer, "get_timestamp", lambda: real_time + 31)
    assert signer.verify(token) is None
