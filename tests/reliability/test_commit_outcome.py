"""A failure before COMMIT is sent is definite (nothing written); a connection lost during
COMMIT is a 503 `CommitOutcomeUnknown`, which a client resolves by retrying with the same
Idempotency-Key. Found by the fault-injection test's ledger: a plain 503 could not tell the
two apart. PostgreSQL, through a proxy that cuts the connection at an exact point."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event, make_url, select, text

from agora.db.errors import CommitOutcomeUnknown, DatabaseUnavailable
from agora.db.session import Database
from agora.models.market import CreditTransfer, TransferKind
from tests.reliability.conftest import make_app, running
from tests.reliability.world import World, seed
from tests.support.tcpproxy import OutageProxy


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[OutageProxy]:
    server = make_url(pg_url)
    async with OutageProxy(server.host or "127.0.0.1", server.port or 5432).running() as running_:
        yield running_


def through(url: str, proxy: OutageProxy) -> str:
    return make_url(url).set(port=proxy.port).render_as_string(hide_password=False)


def cut_at_next_commit(db: Database, proxy: OutageProxy, *, after_the_server: bool) -> None:
    """At the next COMMIT (once), reset the connection before it goes out, or let it reach
    the server and lose the reply (`after_the_server`): then the commit did happen."""

    def on_commit(_conn: Any) -> None:
        if after_the_server:
            proxy.lose_replies_then_cut(after=0.3)
        else:
            proxy.cut()

    event.listen(db.engine.sync_engine, "commit", on_commit, once=True)


async def test_losing_the_connection_before_commit_is_definite(
    pg_url: str, proxy: OutageProxy
) -> None:
    app = make_app(through(pg_url, proxy))
    async with running(app):
        db: Database = app.state.db
        async with db.uow() as uow:
            await uow.session.execute(text("SELECT 1"))
            proxy.cut()
            uow.session.add(CreditTransfer(kind=TransferKind.grant, amount=1, to_user_id=None))
            with pytest.raises(DatabaseUnavailable) as raised:
                await uow.flush()
        assert not isinstance(raised.value, CommitOutcomeUnknown)


@pytest.mark.parametrize(
    "committed", [False, True], ids=["cut-before-the-server", "reply-lost-after-the-commit"]
)
async def test_losing_the_connection_during_commit_is_an_unknown_outcome_resolved_by_a_retry(
    pg_url: str, proxy: OutageProxy, committed: bool
) -> None:
    world: World = await seed(pg_url, members=2, cents=10_00)
    sender, receiver = world.members
    app = make_app(through(pg_url, proxy))
    body = {"to_user_id": receiver, "amount": "1.25"}
    headers = {**world.headers[sender], "Idempotency-Key": "commit-cut-0001"}
    async with running(app), AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        cut_at_next_commit(app.state.db, proxy, after_the_server=committed)
        first = await http.post("/api/v1/credits/transfers", json=body, headers=headers)
        retried = await http.post("/api/v1/credits/transfers", json=body, headers=headers)
        again = await http.post("/api/v1/credits/transfers", json=body, headers=headers)
        async with app.state.db.uow(read_only=True) as uow:
            rows = (
                await uow.session.scalars(
                    select(CreditTransfer.amount).where(
                        CreditTransfer.kind == TransferKind.transfer
                    )
                )
            ).all()

    assert first.status_code == 503, first.text
    assert first.json()["error"] == "CommitOutcomeUnknown"
    assert first.headers["retry-after"] == "1"
    assert retried.status_code == 201, retried.text
    # The retry did the work, or replayed the work the lost commit had done.
    assert retried.headers.get("idempotent-replayed") == ("true" if committed else None)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == retried.json()
    assert rows == [125]  # exactly once
