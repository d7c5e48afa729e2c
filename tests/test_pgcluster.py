"""The throwaway-cluster helper the fault-injection and replica tests stand on."""

from __future__ import annotations

from pathlib import Path

from tests.support import pgcluster


def test_a_throwaway_primary_streams_to_its_replica_and_survives_a_restart(
    cluster_dir: Path,
) -> None:
    with pgcluster.throwaway_cluster(cluster_dir / "primary") as primary:
        primary.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        with primary.replica(cluster_dir / "replica") as replica:
            assert replica.psql("SELECT pg_is_in_recovery()") == "t"
            primary.psql("INSERT INTO t VALUES (2)")
            pgcluster.wait_until(lambda: replica.psql("SELECT count(*) FROM t") == "2")
        primary.restart()
        assert primary.psql("SELECT sum(v) FROM t") == "3"
