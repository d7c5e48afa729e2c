"""`PreparedSelect`: the direct read path returns what the session returns, leaves the pool
as it found it, and keeps errors, lost connections, cancellation and metrics SQLAlchemy's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Float, Integer, bindparam, func, select
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from agora.db.engine import make_engine
from agora.db.errors import DatabaseTimeout, ServiceUnavailable, translate
from agora.db.monitoring import instrument
from agora.db.prepared import PreparedSelect
from agora.db.session import Database
from agora.db.testing import count_queries
from tests.db.models import Counter, Ticket, TicketStatus

T = Ticket.__table__
OPEN_TICKETS = PreparedSelect(
    select(T.c.id, T.c.title, T.c.status, T.c.price, T.c.due_at.label("due"))
    .where(
        T.c.status == TicketStatus.open,  # a value of the statement's own, bound by SQLAlchemy
        T.c.price >= bindparam("min_price"),
        T.c.deleted_at.is_(None),
    )
    .order_by(T.c.id)
)
TITLE = PreparedSelect(select(T.c.title).where(T.c.id == bindparam("id", type_=Integer)))
DUE_BEFORE = PreparedSelect(select(T.c.id).where(T.c.due_at < bindparam("when")))
DUE = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


async def _add_tickets(db: Database) -> list[int]:
    async with db.uow() as uow:
        tickets = [
            Ticket(title="due", status=TicketStatus.open, price=Decimal("12.50"), due_at=DUE),
            Ticket(title="undated", status=TicketStatus.open, price=Decimal("3.00")),
            Ticket(title="closed", status=TicketStatus.closed, price=Decimal("20.00")),
            Ticket(title="gone", status=TicketStatus.open, price=Decimal("9.00"), deleted_at=DUE),
            Ticket(title="cheap", status=TicketStatus.open, price=Decimal("0.50")),
        ]
        uow.session.add_all(tickets)
        await uow.commit()
        return [t.id for t in tickets]


async def test_a_direct_read_returns_what_the_session_returns(
    committed_database: Database, toolkit_engine: AsyncEngine
) -> None:
    ids = await _add_tickets(committed_database)
    async with committed_database.uow(read_only=True) as uow:
        direct = await OPEN_TICKETS.all(uow.session, min_price=Decimal("1"))
        title = await TITLE.scalar(uow.session, id=ids[2])
        one = await TITLE.one_or_none(uow.session, id=ids[0])
        missing = await TITLE.one_or_none(uow.session, id=-1)
        # The direct path: the session never began, and no connection stays checked out.
        assert not uow.session.in_transaction()
        assert toolkit_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with committed_database.uow() as uow:  # a write unit: through the session
        through_session = await OPEN_TICKETS.all(uow.session, min_price=Decimal("1"))
        assert uow.session.in_transaction()

    assert direct == through_session
    assert [row["title"] for row in direct] == ["due", "undated"]
    first = direct[0]
    assert list(first) == ["id", "title", "status", "price", "due"]
    assert first["status"] is TicketStatus.open
    assert first["price"] == Decimal("12.50")
    assert isinstance(first["price"], Decimal)
    assert first["due"] == DUE
    assert first["due"].tzinfo is not None
    assert direct[1]["due"] is None
    assert title == "closed"
    assert one == {"title": "due"}
    assert missing is None


async def test_bound_values_go_through_the_column_types(committed_database: Database) -> None:
    ids = await _add_tickets(committed_database)
    async with committed_database.uow(read_only=True) as uow:
        rows = await DUE_BEFORE.all(uow.session, when=datetime(2027, 1, 1, tzinfo=UTC))
        assert rows == [{"id": ids[0]}]
        # UTCDateTime refuses a naive datetime: the error SQLAlchemy gives, not a bare one.
        with pytest.raises(StatementError, match="naive datetime"):
            await DUE_BEFORE.all(uow.session, when=datetime(2027, 1, 1))


async def test_a_connection_goes_back_to_the_pool_transactional(
    toolkit_engine: AsyncEngine, committed_database: Database
) -> None:
    # One connection: the write below runs on the very connection the direct read used.
    db = Database(make_engine(toolkit_engine.url, pool_size=1, max_overflow=0))
    try:
        async with db.uow(read_only=True) as uow:
            assert await TITLE.one_or_none(uow.session, id=1) is None
        async with db.uow() as uow:
            uow.session.add(Counter(namespace="prepared", key="k", value=1))
            await uow.flush()  # written inside the transaction, never committed
        async with db.uow(read_only=True) as uow:
            count = await uow.session.scalar(select(func.count()).select_from(Counter))
        assert count == 0, "the write was committed: the connection stayed in autocommit"
    finally:
        await db.dispose()


def test_orm_statements_and_expanding_in_are_refused() -> None:
    with pytest.raises(TypeError, match="Core statements"):
        PreparedSelect(select(Ticket))
    with pytest.raises(TypeError, match="Core statements"):  # an ORM attribute anywhere
        PreparedSelect(select(T.c.id).where(Ticket.title == "x"))
    with pytest.raises(ValueError, match="expanding IN"):
        PreparedSelect(select(T.c.id).where(T.c.id.in_(bindparam("ids", expanding=True))))


async def test_statement_listeners_see_every_read(
    committed_database: Database, toolkit_engine: AsyncEngine
) -> None:
    await _add_tickets(committed_database)
    # A listener the direct path cannot serve (e.g. tracing): the read goes the session's way.
    async with (
        count_queries(toolkit_engine) as queries,
        committed_database.uow(read_only=True) as uow,
    ):
        assert len(await OPEN_TICKETS.all(uow.session, min_price=Decimal(0))) == 3
        assert uow.session.in_transaction()
    assert queries.count == 1
    # agora.db.monitoring registers with the direct path, which reports to it.
    registry = CollectorRegistry()
    instrumentation = instrument(toolkit_engine, registry=registry, name="prepared")
    try:
        async with committed_database.uow(read_only=True) as uow:
            await OPEN_TICKETS.all(uow.session, min_price=Decimal(0))
            assert not uow.session.in_transaction()
    finally:
        instrumentation.remove()
    labels = {"pool": "prepared"}
    assert registry.get_sample_value("db_statements_total", labels) == 1
    assert registry.get_sample_value("db_statement_duration_seconds_count", labels) == 1


# --- PostgreSQL: timeouts, lost connections, cancellation ---------------------------------

SLEEP = PreparedSelect(select(func.pg_sleep(bindparam("seconds", type_=Float)).label("slept")))
PID = PreparedSelect(select(func.pg_backend_pid().label("pid")))


async def test_a_statement_timeout_is_typed_and_keeps_the_connection(pg_database_url: str) -> None:
    db = Database(
        make_engine(pg_database_url, pool_size=1, max_overflow=0, statement_timeout_ms=100)
    )
    try:
        async with db.uow(read_only=True) as uow:
            before = await PID.scalar(uow.session)
            with pytest.raises(DBAPIError) as caught:
                await SLEEP.scalar(uow.session, seconds=2)
            assert isinstance(translate(caught.value), DatabaseTimeout)
            assert not caught.value.connection_invalidated
            assert await PID.scalar(uow.session) == before  # still the same, healthy connection
    finally:
        await db.dispose()


async def test_a_lost_connection_is_invalidated_not_reused(pg_database_url: str) -> None:
    db = Database(make_engine(pg_database_url, pool_size=1, max_overflow=0))
    other = make_engine(pg_database_url, pool_size=1, max_overflow=0)
    try:
        async with db.uow(read_only=True) as uow:
            pid = await PID.scalar(uow.session)
        async with other.connect() as conn:
            await conn.execute(select(func.pg_terminate_backend(pid)))
        async with db.uow(read_only=True) as uow:
            with pytest.raises(DBAPIError) as caught:
                await PID.scalar(uow.session)
            assert caught.value.connection_invalidated
            assert isinstance(translate(caught.value), ServiceUnavailable)
            assert await PID.scalar(uow.session) not in (None, pid)  # a fresh connection
    finally:
        await db.dispose()
        await other.dispose()


async def test_a_cancelled_read_does_not_hand_its_connection_on(pg_database_url: str) -> None:
    db = Database(make_engine(pg_database_url, pool_size=1, max_overflow=0))
    try:
        async with db.uow(read_only=True) as uow:
            pid = await PID.scalar(uow.session)
            sleeping = asyncio.create_task(SLEEP.scalar(uow.session, seconds=30))
            await asyncio.sleep(0.3)
            sleeping.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sleeping
        # The connection was mid-statement: it is discarded, and the pool works on at once.
        async with asyncio.timeout(5):
            async with db.uow(read_only=True) as uow:
                assert await PID.scalar(uow.session) != pid
            async with db.uow() as uow:
                assert (
                    await uow.session.scalar(select(func.count()).select_from(select(1).subquery()))
                    == 1
                )
    finally:
        await db.dispose()
