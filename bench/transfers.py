"""Credit transfers per second at N concurrent clients: the HTTP API vs raw asyncpg.

    uv run python -m bench.transfers [--clients 64] [--transfers 3000] [--connections 20]

PostgreSQL only. Creates a throwaway database on the server at `BENCH_POSTGRES_URL` (default
`postgresql://postgres@127.0.0.1:5432/postgres`), migrates it, seeds members, then runs:

* **HTTP**: `POST /api/v1/credits/transfers` against the real service in a **uvicorn
  subprocess** (one worker, uvloop + httptools, access log off), driven over TCP by httpx
  with `--clients` concurrent tasks. The service's pool is `--connections` connections.
* **raw asyncpg**: the same statements the service sends for one transfer (load the caller,
  check the recipient, two guarded UPDATEs in ascending id order, the ledger INSERT, in one
  transaction), from `--clients` tasks over an asyncpg pool of `--connections` connections.

Prints a Markdown table with transfers per second and the ratio (HTTP / raw), and checks
that the total of all balances did not change. Both processes share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import httpx
from alembic import command
from sqlalchemy.engine import make_url

from agora.members.security import Tokens
from agora.migrate import alembic_config

PG_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret-" + "x" * 32
START_CENTS = 1_000_000_00


@dataclass
class Result:
    name: str
    transfers: int
    seconds: float
    statuses: Counter[int]

    @property
    def rate(self) -> float:
        return self.transfers / self.seconds


def _dsn(database: str) -> str:
    url = make_url(PG_SERVER).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


async def create_database() -> str:
    name = f"agora_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(_dsn("postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await asyncio.to_thread(command.upgrade, alembic_config(_dsn(name)), "head")
    return name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(_dsn("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def seed(dsn: str, members: int) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            'INSERT INTO "user" (email, username, hashed_password, credits) '
            "SELECT 'b' || n || '@bench.test', 'bench' || n, 'x', $2 "
            "FROM generate_series(1, $1) AS n RETURNING id",
            members,
            START_CENTS,
        )
    finally:
        await conn.close()
    return [row["id"] for row in rows]


async def total_credits(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval('SELECT sum(credits) FROM "user"'))
    finally:
        await conn.close()


def _pairs(ids: list[int], n: int, seed: int) -> list[tuple[int, int, int]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        sender, receiver = rng.sample(ids, 2)
        pairs.append((sender, receiver, rng.randint(1, 500)))
    return pairs


async def _drive(
    name: str,
    clients: int,
    pairs: list[tuple[int, int, int]],
    send: Callable[[int, int, int], Awaitable[int]],
) -> Result:
    """Run `send(sender, receiver, cents) -> status` for every pair from `clients` tasks."""
    queue = list(reversed(pairs))
    statuses: Counter[int] = Counter()

    async def client() -> None:
        while queue:
            sender, receiver, cents = queue.pop()
            statuses[await send(sender, receiver, cents)] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Result(name, len(pairs), time.perf_counter() - started, statuses)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_http(dsn: str, ids: list[int], args: argparse.Namespace) -> Result:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGORA_")},
        "AGORA_DATABASE_URL": dsn,
        "AGORA_SECRET_KEY": SECRET,
        "AGORA_POOL_SIZE": str(args.connections),
        "AGORA_MAX_OVERFLOW": "0",
        "AGORA_POOL_TIMEOUT": "30",
        "AGORA_ACCESS_LOG": "false",
        "AGORA_LOG_LEVEL": "WARNING",
    }
    server = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "uvicorn",
            "agora.app:create_app",
            "--factory",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    tokens = Tokens(SECRET, ttl=timedelta(hours=1))
    headers = {uid: {"Authorization": f"Bearer {tokens.issue(uid).token}"} for uid in ids}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
        ) as http:
            for _ in range(200):
                try:
                    if (await http.get("/health/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the server did not start")

            async def send(sender: int, receiver: int, cents: int) -> int:
                body = {"to_user_id": receiver, "amount": f"{cents / 100:.2f}"}
                response = await http.post(
                    "/api/v1/credits/transfers", json=body, headers=headers[sender]
                )
                return response.status_code

            for sender, receiver, cents in _pairs(ids, 50, seed=99):  # warm-up
                await send(sender, receiver, cents)
        # The timed run uses one plain keep-alive connection per client (as wrk does), not
        # httpx: httpcore's pool checks every pooled connection (a poll() and getpeername()
        # each) on every request, which at 64 connections cost the client more CPU than the
        # server spent (py-spy, bench/README.md), on the same two cores.
        conns = [await _KeepAlive.open(port) for _ in range(args.clients)]
        slots = asyncio.Queue[_KeepAlive]()
        for conn in conns:
            slots.put_nowait(conn)

        async def send_raw(sender: int, receiver: int, cents: int) -> int:
            conn = await slots.get()
            try:
                body = f'{{"to_user_id":{receiver},"amount":"{cents / 100:.2f}"}}'
                return await conn.post("/api/v1/credits/transfers", body, auth[sender])
            finally:
                slots.put_nowait(conn)

        auth = {uid: h["Authorization"] for uid, h in headers.items()}
        try:
            return await _drive(
                "HTTP (uvicorn + agora)", args.clients, _pairs(ids, args.transfers, 1), send_raw
            )
        finally:
            for conn in conns:
                conn.writer.close()
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)


@dataclass
class _KeepAlive:
    """A minimal HTTP/1.1 client on one persistent connection: one request at a time."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int) -> _KeepAlive:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: str, authorization: str) -> int:
        data = body.encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(lines[0].split(" ", 2)[1])


async def run_raw(dsn: str, ids: list[int], args: argparse.Namespace) -> Result:
    pool = await asyncpg.create_pool(dsn, min_size=args.connections, max_size=args.connections)
    assert pool is not None
    move = (
        'UPDATE "user" SET credits = credits + $2 WHERE id = $1 '
        "AND credits + $2 >= 0 AND credits + $2 <= 1000000000000000000 RETURNING id"
    )
    ledger = (
        "INSERT INTO credit_transfer (kind, from_user_id, to_user_id, amount, note, created_at) "
        "VALUES ('transfer', $1, $2, $3, '', now()) RETURNING id, created_at"
    )

    async def send(sender: int, receiver: int, cents: int) -> int:
        async with pool.acquire() as conn, conn.transaction():
            await conn.fetchrow('SELECT * FROM "user" WHERE id = $1 AND deleted_at IS NULL', sender)
            status = await conn.fetchval(
                'SELECT status FROM "user" WHERE id = $1 AND deleted_at IS NULL', receiver
            )
            if status != "active":
                return 404
            for uid, delta in sorted({sender: -cents, receiver: cents}.items()):
                if await conn.fetchval(move, uid, delta) is None:
                    raise _Refused()
            await conn.fetchrow(ledger, sender, receiver, cents)
            return 201

    async def guarded(sender: int, receiver: int, cents: int) -> int:
        try:
            return await send(sender, receiver, cents)
        except _Refused:
            return 409

    try:
        for sender, receiver, cents in _pairs(ids, 50, seed=99):  # warm-up
            await guarded(sender, receiver, cents)
        return await _drive("raw asyncpg", args.clients, _pairs(ids, args.transfers, 1), guarded)
    finally:
        await pool.close()


class _Refused(Exception):
    pass


def table(results: list[Result], *, baseline: str, args: argparse.Namespace) -> str:
    base = next(r for r in results if r.name == baseline)
    lines = [
        f"### Credit transfers, {args.clients} concurrent clients, {args.connections} "
        f"database connections, {args.members} members",
        "",
        "| variant | transfers | seconds | transfers/s | statuses | ratio vs raw |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items()))
        lines.append(
            f"| {r.name} | {r.transfers} | {r.seconds:.2f} | {r.rate:.0f} | {codes} | "
            f"{r.rate / base.rate:.2f} |"
        )
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> None:
    name = await create_database()
    dsn = _dsn(name)
    try:
        ids = await seed(dsn, args.members)
        before = await total_credits(dsn)
        raw = await run_raw(dsn, ids, args)
        http = await run_http(dsn, ids, args)
        after = await total_credits(dsn)
        if after != before:
            raise SystemExit(f"the books do not balance: {before} -> {after}")
        print(table([http, raw], baseline=raw.name, args=args))
    finally:
        await drop_database(name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--transfers", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--members", type=int, default=100)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
