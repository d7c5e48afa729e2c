"""Fixtures for the scale-out tests: real PostgreSQL clusters, replicas and PgBouncer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import pgcluster
from tests.support.databases import require_postgres


@pytest.fixture
def cluster_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for throwaway clusters; skipped (failed under AGORA_REQUIRE_POSTGRES)
    when this machine cannot run a PostgreSQL server of the test's own."""
    reason = pgcluster.available()
    if reason is not None:
        if require_postgres():
            pytest.fail(reason)
        pytest.skip(reason)
    return tmp_path_factory.mktemp("cluster")
