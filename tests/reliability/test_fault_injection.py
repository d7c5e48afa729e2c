"""Item 3: fault injection against a real PostgreSQL under load.

A throwaway cluster (never the shared server), the service in a uvicorn subprocess, and
concurrent clients sending credit transfers and orders, each with its own Idempotency-Key,
while the test terminates the service's backends (`pg_terminate_backend`) and then restarts
the server. Every request ends in the client's ledger as:

* **ack**: a 2xx;
* **fail**: a definite refusal: any 4xx (the transaction rolled back), or a 503 other than
  `CommitOutcomeUnknown` (the service answers that one only when the connection failed
  during COMMIT; any earlier failure means COMMIT was never sent, so nothing was written);
* **unknown**: `CommitOutcomeUnknown`, a transport error or a client timeout.

Afterwards every ack is in the database, no fail is, every unknown retried with the same key
and body resolves to exactly one effect, the books balance, no response was a 500, and the
last 5xx arrived within 2 s of the server accepting connections again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import select

from agora.db.engine import make_engine
from agora.models.market import CreditTransfer, IdempotencyKey, Order
from tests.reliability.world import (
    APP_NAME,
    World,
    assert_books_balance,
    books,
    seed,
    uvicorn_server,
)
from tests.support import pgcluster
from tests.support.databases import upgrade

CLIENTS = 12
WARM_UP = 2.0  # s of load before the first fault
AFTER_RECOVERY = 4.0  # s of load after the server is back
RECOVERY_BOUND = 2.0  # s: no 5xx later than this after the database accepts connections


@dataclass
class Attempt:
    kind: str  # "transfer" or "order"
    user: int
    key: str
    body: dict[str, object]
    outcome: str = ""  # ack / fail / unknown
    status: int | None = None
    error: str | None = None
    at: float = 0.0  # monotonic time the answer (or the failure) arrived
    resolved: str = ""  # for unknowns: ack / fail after the retries
    replayed: bool = False  # the retry replayed a response stored by the first attempt
    row_id: int | None = None  # the transfer's or order's id in a 2xx answer

    @property
    def path(self) -> str:
        return "/api/v1/credits/transfers" if self.kind == "transfer" else "/api/v1/orders"


def classify(response: httpx.Response) -> tuple[str, str | None]:
    status = response.status_code
    if 200 <= status < 300:
        return "ack", None
    error = response.json().get("error") if response.content else None
    if 400 <= status < 500:
        return "fail", error
    if status == 503 and error != "CommitOutcomeUnknown":
        return "fail", error
    return "unknown", error


async def send(http: httpx.AsyncClient, world: World, attempt: Attempt) -> httpx.Response:
    headers = {**world.headers[attempt.user], "Idempotency-Key": attempt.key}
    return await http.post(attempt.path, json=attempt.body, headers=headers)


async def client(
    http: httpx.AsyncClient, world: World, rng: random.Random, stop: asyncio.Event,
    ledger: list[Attempt], keys: itertools.count[int],
) -> None:  # fmt: skip
    products = list(world.products)
    while not stop.is_set():
        user = rng.choice(world.members)
        if rng.random() < 0.6:
            to = rng.choice([m for m in world.members if m != user])
            body: dict[str, object] = {
                "to_user_id": to,
                "amount": f"{rng.randint(1, 900) / 100:.2f}",
            }
            attempt = Attempt("transfer", user, f"fault-t-{next(keys)}", body)
        else:
            lines = rng.sample(products, rng.randint(1, 2))
            body = {"items": [{"product_id": p, "quantity": rng.randint(1, 3)} for p in lines]}
            attempt = Attempt("order", user, f"fault-o-{next(keys)}", body)
        ledger.append(attempt)
        try:
            response = await send(http, world, attempt)
        except httpx.HTTPError as exc:
            attempt.outcome, attempt.error = "unknown", type(exc).__name__
        else:
            attempt.status = response.status_code
            attempt.outcome, attempt.error = classify(response)
            if attempt.outcome == "ack":
                attempt.row_id = response.json()["id"]
        attempt.at = time.monotonic()


async def resolve(http: httpx.AsyncClient, world: World, attempt: Attempt) -> None:
    """Retry an unknown with the same key and body until the answer is definite."""
    for _ in range(50):
        try:
            response = await send(http, world, attempt)
        except httpx.HTTPError:
            await asyncio.sleep(0.2)
            continue
        assert response.status_code != 500, response.text
        outcome, _ = classify(response)
        if outcome == "fail" and response.status_code >= 500:
            await asyncio.sleep(0.2)
            continue
        if outcome != "unknown":
            attempt.resolved = outcome
            attempt.replayed = response.headers.get("idempotent-replayed") == "true"
            return
    raise AssertionError(f"{attempt.key} never got a definite answer")


async def terminate_app_backends(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        killed = await conn.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            APP_NAME,
        )
    finally:
        await conn.close()
    return int(killed)


async def restart_and_time(cluster: pgcluster.Cluster) -> float:
    """Restart the server; the monotonic time it first accepted a connection again."""
    back: list[float] = []
    restarting = asyncio.create_task(asyncio.to_thread(cluster.restart))
    seen_down = False
    while not (restarting.done() and back):
        try:
            conn = await asyncpg.connect(cluster.dsn(), timeout=1)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            seen_down = True
        else:
            await conn.close()
            if seen_down and not back:
                back.append(time.monotonic())
        await asyncio.sleep(0.02)
    await restarting
    assert seen_down, "the probe never saw the server down"
    return back[0]


@dataclass
class Stored:
    keys: dict[tuple[int, str], str | None]  # (user, key) -> stored response body
    transfer_ids: set[int]
    order_ids: set[int]


async def stored(url: str) -> Stored:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(IdempotencyKey.user_id, IdempotencyKey.key, IdempotencyKey.response_body)
            )
            keys = {(uid, key): body for uid, key, body in rows}
            transfers = set(
                (
                    await conn.scalars(
                        select(CreditTransfer.id).where(CreditTransfer.kind == "transfer")
                    )
                ).all()
            )
            orders = set((await conn.scalars(select(Order.id))).all())
    finally:
        await engine.dispose()
    return Stored(keys, transfers, orders)


def test_acknowledged_writes_survive_killed_backends_and_a_restart() -> None:
    pgcluster.require()
    with pgcluster.workdir("agora-faults-") as tmp:
        _fault_injection(tmp)


def _fault_injection(workdir: Path) -> None:
    with pgcluster.throwaway_cluster(workdir / "pg") as cluster:
        cluster.psql("CREATE DATABASE agora")
        url = cluster.url("agora")
        asyncio.run(upgrade(url))
        world = asyncio.run(seed(url, members=16, cents=50_00, products=6, stock=150))
        settings = {"pool_size": 8, "max_overflow": 0, "pool_timeout": 2, "connect_timeout": 2}
        with uvicorn_server(url, workdir / "server.log", **settings) as base:
            report = asyncio.run(_run(base, url, cluster, world))
        print("\nfault injection:", json.dumps(report))


async def _run(base: str, url: str, cluster: pgcluster.Cluster, world: World) -> dict[str, object]:
    ledger: list[Attempt] = []
    keys = itertools.count(1)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=15, limits=limits) as http:
        clients = [
            asyncio.create_task(client(http, world, random.Random(n), stop, ledger, keys))
            for n in range(CLIENTS)
        ]
        await asyncio.sleep(WARM_UP)
        killed = await terminate_app_backends(cluster.dsn())
        await asyncio.sleep(1.0)
        killed += await terminate_app_backends(cluster.dsn())
        await asyncio.sleep(1.0)
        back = await restart_and_time(cluster)
        await asyncio.sleep(AFTER_RECOVERY)
        stop.set()
        await asyncio.gather(*clients)

        unknowns = [a for a in ledger if a.outcome == "unknown"]
        for attempt in unknowns:
            await resolve(http, world, attempt)
        # An ack retried with its key replays the first answer: nothing happens twice.
        for attempt in [a for a in ledger if a.outcome == "ack"][:20]:
            replay = await send(http, world, attempt)
            assert replay.status_code == 201
            assert replay.headers["idempotent-replayed"] == "true"

    statuses = [a.status for a in ledger]
    assert 500 not in statuses
    assert killed > 0, "no backend of the service was terminated"
    server_errors = [a for a in ledger if a.status is not None and a.status >= 500]
    assert server_errors, "the faults never reached a client: the test proves nothing"
    for attempt in server_errors:
        assert attempt.status == 503, attempt
    last_5xx = max(a.at for a in server_errors) - back
    assert last_5xx <= RECOVERY_BOUND, f"a 5xx came {last_5xx:.2f} s after the restart"

    db = await stored(url)
    for attempt in ledger:
        effective = attempt.resolved or attempt.outcome
        assert effective in ("ack", "fail"), attempt
        body = db.keys.get((attempt.user, attempt.key))
        if effective == "fail":
            assert body is None, f"a failed request left a trace: {attempt}"
            continue
        assert body is not None, f"an acknowledged request is missing: {attempt}"
        row_id = json.loads(body)["id"]
        assert attempt.row_id in (None, row_id), attempt  # the id the client was given
        assert row_id in (db.transfer_ids if attempt.kind == "transfer" else db.order_ids)
    # Exactly once: one ledger row per stored transfer key, one order per stored order key.
    kinds = {a.key: a.kind for a in ledger}
    stored_transfers = [k for (_, k) in db.keys if kinds.get(k) == "transfer"]
    assert len(db.keys) == len(stored_transfers) + len(db.order_ids)
    assert len(db.transfer_ids) == len(stored_transfers)
    assert_books_balance(await books(url, world), world)

    count = {o: sum(a.outcome == o for a in ledger) for o in ("ack", "fail", "unknown")}
    answers = Counter(f"{a.status} {a.error or ''}".strip() for a in ledger)
    return {
        "requests": len(ledger),
        **count,
        "answers": dict(answers.most_common()),
        "unknown_resolved_ack": sum(a.resolved == "ack" for a in ledger),
        "unknown_had_committed": sum(a.replayed for a in ledger),
        "status_503": len(server_errors),
        "backends_terminated": killed,
        "last_5xx_after_restart_s": round(last_5xx, 2),
    }
