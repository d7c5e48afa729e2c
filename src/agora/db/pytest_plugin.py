"""pytest fixtures from `agora.db`. Enable with `pytest_plugins = ["agora.db.pytest_plugin"]`.

async def test_listing_is_n_plus_1_free(count_queries, engine, uow):
    async with count_queries(engine) as q:
        await list_posts(uow, limit=100)
    assert q.count <= 3, q.statements
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from agora.db import testing

CountQueries = Callable[[Any], AbstractAsyncContextManager[testing.QueryCounter]]


@pytest.fixture
def count_queries() -> CountQueries:
    """`async with count_queries(engine_or_connection) as q: ...` then check `q.count`."""
    return testing.count_queries
