"""Item 7: SQLite under 8 concurrent writers (credit transfers through the API) while another
OS process holds the write lock (`BEGIN IMMEDIATE`) for 1 s.

With the default busy timeout (5 s) every transfer waits the lock out and succeeds; with a
busy timeout shorter than the lock, the ones that give up get a clean 503 `DatabaseTimeout`
(`Retry-After: 1`), never SQLite's "database is locked" and never a 500. Either way the
books balance afterwards.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from httpx import ASGITransport, AsyncClient

from tests.reliability.conftest import make_app, running
from tests.reliability.world import World, assert_books_balance, books, seed
from tests.support.databases import upgrade

WRITERS = 8
HOLD = 1.0  # s the other process keeps the write lock

_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


async def hold_write_lock(path: Path, seconds: float) -> tuple[float, float]:
    """Run the holder process; (when it had the lock, when it let go), monotonic."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, str(path), str(seconds), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"locked"
    locked = time.monotonic()
    assert await proc.wait() == 0
    return locked, time.monotonic()


async def write_through(
    path: Path, world: World, **settings: object
) -> tuple[list[httpx.Response], tuple[float, float], float]:
    """8 writers sending transfers before, during and after the other process's lock."""
    app = make_app(f"sqlite:///{path}", **settings)
    responses: list[httpx.Response] = []
    slowest = 0.0
    stop = asyncio.Event()

    async def writer(http: AsyncClient, rng: random.Random) -> None:
        nonlocal slowest
        while not stop.is_set():
            sender, receiver = rng.sample(world.members, 2)
            body = {"to_user_id": receiver, "amount": f"{rng.randint(1, 99) / 100:.2f}"}
            started = time.monotonic()
            response = await http.post(
                "/api/v1/credits/transfers", json=body, headers=world.headers[sender]
            )
            slowest = max(slowest, time.monotonic() - started)
            responses.append(response)

    async with running(app), AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        writers = [asyncio.create_task(writer(http, random.Random(n))) for n in range(WRITERS)]
        await asyncio.sleep(0.3)
        lock = await hold_write_lock(path, HOLD)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*writers)
    return responses, lock, slowest


async def _world(tmp_path: Path) -> tuple[Path, World]:
    path = tmp_path / "locking.db"
    await upgrade(f"sqlite:///{path}")
    return path, await seed(f"sqlite:///{path}", members=8, cents=1_000_00)


async def test_writers_wait_out_another_process_holding_the_write_lock(tmp_path: Path) -> None:
    path, world = await _world(tmp_path)
    responses, (locked, released), slowest = await write_through(path, world)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: len(responses)}, [r.text for r in responses if r.status_code != 201]
    assert slowest >= 0.5 * HOLD  # some writer really waited for the other process
    assert released - locked >= HOLD
    assert_books_balance(await books(f"sqlite:///{path}", world), world)
    print(f"\nsqlite locking: {len(responses)} transfers, all 201, slowest {slowest:.2f} s")


async def test_a_busy_timeout_shorter_than_the_lock_is_a_clean_503(tmp_path: Path) -> None:
    path, world = await _world(tmp_path)
    responses, _, _ = await write_through(path, world, sqlite_busy_timeout_ms=200)

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) == {201, 503}, statuses  # some waited in vain, the rest went through
    for response in responses:
        assert "locked" not in response.text
        if response.status_code == 503:
            assert response.json()["error"] == "DatabaseTimeout"
            assert response.headers["retry-after"] == "1"
    assert_books_balance(await books(f"sqlite:///{path}", world), world)
