"""The scenarios S1-S7 and the pgbench yardstick, each rendered as a Markdown section.

HTTP scenarios (S1, S2, S4, S6, S7) run real server processes driven by wrk (see
`bench.harness`); S3 times the forum listing in process (`bench.forum`); S5 loads data
(`bench.seed`). Each returns a `Section`: its Markdown and one summary row per goal.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

from agora.members.security import Tokens
from bench.harness import (
    REPO_ROOT,
    Load,
    Server,
    Side,
    interleave,
    ms,
    rps_table,
    running,
    uvicorn_command,
    verdict,
)

SECRET = "bench-secret-key-" + "x" * 40  # a throwaway database; >= 32 characters (production)
POOL = 10  # both sides' database connections in every HTTP scenario
RICH_CENTS = 10**13  # S4's members can send for ever (the ceiling is 10**15 - 1)


@dataclass(frozen=True)
class Config:
    """What a run is made of (`--quick` shrinks everything to a smoke test)."""

    server: URL  # a PostgreSQL server URL, any database (driver ignored)
    rounds: int = 3
    seconds: float = 10.0
    warmup: float = 3.0
    users: int = 10_000
    posts: int = 1_000_000
    seed_rows: int = 200_000
    connections: int = 32  # wrk connections for S1, S2, S7
    busy_connections: int = 64  # S4 and S6
    pgbench_seconds: int = 10
    pgbench_scale: int = 10
    ir_requests: int = 200  # instructions counted over this many requests per side...
    ir_warmup: int = 300  # ...after this many
    members_db: str = field(default_factory=lambda: f"agora_bench_{os.getpid()}")
    forum_cache: bool = True
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="agora-bench-")))

    def dsn(self, database: str) -> str:
        url = self.server.set(drivername="postgresql", database=database)
        return url.render_as_string(hide_password=False)

    def asyncpg_url(self, database: str) -> str:
        return self.dsn(database).replace("postgresql://", "postgresql+asyncpg://", 1)


@dataclass(frozen=True)
class Goal:
    scenario: str
    measure: str
    value: str
    goal: str
    status: str


@dataclass
class Section:
    title: str
    lines: list[str]
    goals: list[Goal]


def _env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGORA_", "BENCH_"))}
    # The checkout's own sources first, whatever the environment has installed.
    path = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])
    return {**base, "PYTHONPATH": path, **extra}


def agora_server(cfg: Config, name: str, database_url: str, **settings: str) -> Server:
    """`agora serve` (uvicorn, 1 worker, uvloop + httptools), production settings: JSON logs
    and the access log on, written to a file."""
    env = {
        "AGORA_ENV": "production",
        "AGORA_DATABASE_URL": database_url,
        "AGORA_SECRET_KEY": SECRET,
        "AGORA_POOL_SIZE": str(POOL),
        "AGORA_MAX_OVERFLOW": "0",
        "AGORA_POOL_TIMEOUT": "30",
        **{f"AGORA_{k.upper()}": v for k, v in settings.items()},
    }
    command = [sys.executable, "-m", "agora", "serve", "--no-migrate", "--port", "{port}"]
    return Server(name, command, _env(env), "/health/ready", cfg.workdir / f"{name}.log")


def baseline_server(cfg: Config, name: str, app: str, env: dict[str, str]) -> Server:
    return Server(name, uvicorn_command(app), _env(env), "/health", cfg.workdir / f"{name}.log")


# --- data ----------------------------------------------------------------------------------


async def _recreate(cfg: Config, name: str) -> None:
    conn = await asyncpg.connect(cfg.dsn("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def agora_seed(database_url: str, users: int) -> None:
    """`agora seed --users N` (which migrates first), as an operator would run it."""
    proc = subprocess.run(
        [sys.executable, "-m", "agora", "seed", "--users", str(users)],
        env=_env({"AGORA_DATABASE_URL": database_url}),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"agora seed failed:\n{proc.stdout}\n{proc.stderr}")


class Data:
    """The members database (PostgreSQL `agora_bench_<pid>`, created per run and dropped at
    the end, so concurrent runs never share one), its tokens, and the SQLite file of S7."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._pg_ready = False

    @property
    def pg_url(self) -> str:
        return self.cfg.asyncpg_url(self.cfg.members_db)

    def postgres(self) -> None:
        if self._pg_ready:
            return
        asyncio.run(_recreate(self.cfg, self.cfg.members_db))
        agora_seed(self.pg_url, self.cfg.users)
        self.tokens_file = self.cfg.workdir / "tokens.txt"
        ids = asyncio.run(self._members(self.cfg.dsn(self.cfg.members_db)))
        tokens = Tokens(SECRET, ttl=timedelta(hours=6))
        self.tokens_file.write_text("".join(f"{i} {tokens.issue(i).token}\n" for i in ids))
        self._pg_ready = True

    @staticmethod
    async def _members(dsn: str) -> list[int]:
        """200 active members, made rich enough for S4 (they get a token each)."""
        conn = await asyncpg.connect(dsn)
        try:
            ids = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM \"user\" WHERE status = 'active' AND deleted_at IS NULL "
                    "ORDER BY id LIMIT 200"
                )
            ]
            await conn.execute(
                'UPDATE "user" SET credits = $2 WHERE id = ANY($1::bigint[])', ids, RICH_CENTS
            )
        finally:
            await conn.close()
        return ids

    def drop(self) -> None:
        if self._pg_ready:
            asyncio.run(_drop(self.cfg, self.cfg.members_db))
            self._pg_ready = False

    def sqlite(self) -> str:
        path = self.cfg.workdir / "s7.db"
        if not path.exists():
            agora_seed(f"sqlite+aiosqlite:///{path}", self.cfg.users)
        return str(path)


# --- the HTTP scenarios ------------------------------------------------------------------


def _compare(
    cfg: Config,
    wrk: str,
    agora: Server,
    baseline: Server,
    load: Load,
) -> tuple[Side, Side]:
    a, b = Side("Agora", agora, load), Side(baseline.name, baseline, load)
    with running(agora, baseline):
        interleave(wrk, [a, b], rounds=cfg.rounds, seconds=cfg.seconds, warmup=cfg.warmup)
    return a, b


def _ratio_section(
    key: str,
    title: str,
    what: list[str],
    sides: tuple[Side, Side],
    goal: float,
    *,
    floor: float | None = None,
) -> Section:
    a, b = sides
    ratios = [x.rps / y.rps for x, y in zip(a.results, b.results, strict=True)]
    ratio = a.median() / b.median()
    goal_text = f">= {goal:.2f}" + (f" (floor {floor:.2f})" if floor else "")
    lines = [
        *what,
        "",
        *rps_table(sides),
        "",
        f"Ratio Agora / {b.name} (medians): **{ratio:.2f}**; per round: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f". Goal {goal_text}: {verdict(ratio, goal)}"
        + (f" (floor: {verdict(ratio, floor)})" if floor else "")
        + ".",
    ]
    value = f"{ratio:.2f} ({a.median():,.0f} vs {b.median():,.0f} req/s)"
    return Section(
        title, lines, [Goal(key, f"Agora / {b.name}", value, goal_text, verdict(ratio, goal))]
    )


def s1(cfg: Config, wrk: str, data: Data) -> Section:
    data.postgres()
    load = Load("ids.lua", "/", cfg.connections, (str(cfg.users), "/api/v1/users/"))
    sides = _compare(
        cfg,
        wrk,
        agora_server(cfg, "agora-s1", data.pg_url),
        baseline_server(cfg, "Starlette + asyncpg", "bench.baselines.pg_app:create_app",
                        {"BENCH_DSN": cfg.dsn(cfg.members_db), "BENCH_SECRET_KEY": SECRET,
                         "BENCH_POOL_SIZE": str(POOL)}),
        load,
    )  # fmt: skip
    what = [
        f"`GET /api/v1/users/{{id}}` (public view with profile), random ids among "
        f"{cfg.users:,} seeded users, wrk {cfg.connections} connections, {POOL} database "
        "connections on each side. Baseline: `bench/baselines/pg_app.py` (one "
        "`user LEFT JOIN user_profile` query on an asyncpg pool, orjson).",
    ]
    return _ratio_section(
        "S1", "S1: GET /api/v1/users/{id} (PostgreSQL)", what, sides, 0.50, floor=0.35
    )


def s2(cfg: Config, wrk: str, data: Data) -> Section:
    data.postgres()
    load = Load("token.lua", "/api/v1/users/me", cfg.connections, (str(data.tokens_file),))
    sides = _compare(
        cfg,
        wrk,
        agora_server(cfg, "agora-s2", data.pg_url),
        baseline_server(cfg, "Starlette + asyncpg", "bench.baselines.pg_app:create_app",
                        {"BENCH_DSN": cfg.dsn(cfg.members_db), "BENCH_SECRET_KEY": SECRET,
                         "BENCH_POOL_SIZE": str(POOL)}),
        load,
    )  # fmt: skip
    what = [
        f"`GET /api/v1/users/me` with a bearer token (JWT HS256) of one of 200 members, wrk "
        f"{cfg.connections} connections. Baseline: PyJWT with Agora's rules + the same "
        "one-query user read, private view.",
    ]
    return _ratio_section("S2", "S2: GET /api/v1/users/me (PostgreSQL)", what, sides, 0.45)


def s4(cfg: Config, wrk: str, data: Data) -> Section:
    data.postgres()
    load = Load("transfer.lua", "/api/v1/credits/transfers", cfg.busy_connections,
                (str(data.tokens_file),))  # fmt: skip
    sides = _compare(
        cfg,
        wrk,
        agora_server(cfg, "agora-s4", data.pg_url),
        baseline_server(cfg, "Starlette + asyncpg", "bench.baselines.pg_app:create_app",
                        {"BENCH_DSN": cfg.dsn(cfg.members_db), "BENCH_SECRET_KEY": SECRET,
                         "BENCH_POOL_SIZE": str(POOL)}),
        load,
    )  # fmt: skip
    what = [
        f"`POST /api/v1/credits/transfers` between 200 members, wrk {cfg.busy_connections} "
        f"connections, {POOL} database connections on each side. **Both sides pay HTTP**: "
        "the baseline is a Starlette + raw asyncpg app (`bench/baselines/pg_app.py`) sending "
        "the same statements in the same transaction shape (sender active, recipient active, "
        "two guarded UPDATEs in ascending id order, the ledger INSERT ... RETURNING; "
        "BEGIN/COMMIT).",
    ]
    return _ratio_section(
        "S4", "S4: POST /api/v1/credits/transfers (PostgreSQL)", what, sides, 0.40
    )


def s6(cfg: Config, wrk: str, data: Data) -> Section:
    data.postgres()
    load = Load("ids_5xx.lua", "/", cfg.busy_connections, (str(cfg.users), "/api/v1/users/"))
    side = Side("Agora", agora_server(cfg, "agora-s6", data.pg_url), load)
    with running(side.server):
        interleave(wrk, [side], rounds=cfg.rounds, seconds=cfg.seconds, warmup=cfg.warmup)
    errors = sum(r.status_5xx or 0 for r in side.results)
    tail = [r.p99 / r.p50 for r in side.results]
    tail_median = sorted(tail)[len(tail) // 2]
    lines = [
        f"`GET /api/v1/users/{{id}}` from wrk {cfg.busy_connections} connections on Agora "
        f"with a pool of {POOL} connections and no overflow (`AGORA_POOL_SIZE={POOL}`, "
        "`AGORA_MAX_OVERFLOW=0`, `AGORA_POOL_TIMEOUT=30`): requests queue for a connection.",
        "",
        *rps_table([side]),
        "",
        f"5xx responses (counted by the Lua script): **{errors}** (goal 0: "
        f"{verdict(-errors, 0)}); p99/p50 per round: "
        + ", ".join(f"{t:.2f}" for t in tail)
        + f", median **{tail_median:.2f}** (goal <= 5: "
        f"{verdict(tail_median, 5, higher_is_better=False)}).",
    ]
    return Section(
        "S6: oversubscription, 64 clients on a pool of 10 (PostgreSQL)",
        lines,
        [
            Goal("S6", "5xx responses", str(errors), "0", verdict(-errors, 0)),
            Goal(
                "S6",
                "p99 / p50",
                f"{tail_median:.2f}",
                "<= 5",
                verdict(tail_median, 5, higher_is_better=False),
            ),
        ],
    )


def s7(cfg: Config, wrk: str, data: Data) -> Section:
    path = data.sqlite()
    load = Load("ids.lua", "/", cfg.connections, (str(cfg.users), "/api/v1/users/"))
    sides = _compare(
        cfg,
        wrk,
        agora_server(cfg, "agora-s7", f"sqlite+aiosqlite:///{path}"),
        baseline_server(cfg, "Starlette + aiosqlite", "bench.baselines.sqlite_app:create_app",
                        {"BENCH_SQLITE_PATH": path}),
        load,
    )  # fmt: skip
    what = [
        f"`GET /api/v1/users/{{id}}` on a SQLite WAL file seeded by `agora seed` "
        f"({cfg.users:,} users), wrk {cfg.connections} connections. Baseline: "
        "`bench/baselines/sqlite_app.py` (one aiosqlite connection, the same join).",
    ]
    return _ratio_section("S7", "S7: GET /api/v1/users/{id} (SQLite)", what, sides, 0.50)


# --- S3, S5: data-heavy scenarios, in process ----------------------------------------------


def s3(cfg: Config, _wrk: str, _data: Data) -> Section:
    from bench import forum

    result = asyncio.run(
        forum.scenario(
            cfg.server, posts=cfg.posts, rounds=max(cfg.rounds, 3), cache=cfg.forum_cache
        )
    )
    ratio = result.deep_over_first
    lines = [
        *result.lines,
        "",
        f"Deepest cursor page / first page: **{ratio:.2f}x** (goal <= 1.5x: "
        f"{verdict(ratio, 1.5, higher_is_better=False)}).",
    ]
    return Section(
        f"S3: GET /api/v1/posts?limit=20 on {cfg.posts:,} posts (PostgreSQL)",
        lines,
        [
            Goal(
                "S3",
                "deepest cursor page / first page",
                f"{ratio:.2f}x",
                "<= 1.5x",
                verdict(ratio, 1.5, higher_is_better=False),
            )
        ],
    )


def s5(cfg: Config, _wrk: str, _data: Data) -> Section:
    from bench import seed

    result = asyncio.run(seed.scenario(rows=cfg.seed_rows, rounds=cfg.rounds))
    return Section(
        f"S5: bulk load, `agora seed` vs COPY ({cfg.seed_rows:,} rows)",
        result.lines,
        [
            Goal(
                "S5",
                "agora seed / raw COPY (rows/s)",
                f"{result.ratio:.2f}",
                ">= 0.80",
                verdict(result.ratio, 0.80),
            )
        ],
    )


def ir(cfg: Config, _wrk: str, data: Data) -> Section:
    """S1, S2, S4 and S7 counted in instructions per request (`bench.instructions`)."""
    from bench import instructions  # it imports this module

    title = "Instructions per request (S1, S2, S4, S7 in process, callgrind)"
    missing = instructions.available()
    if missing:
        return Section(title, [f"Not measured: {missing}."], [])
    cases = ["s1", "s2", "s4", "s7"]
    requests, warmup = cfg.ir_requests, cfg.ir_warmup
    run = instructions.Run(cfg.workdir, cfg.users, requests, warmup)
    counts = instructions.count(cases, data, run)
    lines = [
        f"`bench/instructions.py`: {requests} requests per side counted after {warmup}, "
        "through the ASGI interface (no HTTP server, no sockets), each side in its own process "
        "under valgrind. Repeatable to ~0.1% whatever the machine's load, unlike the wall-clock "
        "figures above; lower ratios than over HTTP (the server's share, the same on both "
        "sides, is left out). The measure for before/after comparisons of a change.",
        "",
        *instructions.table(cases, counts),
    ]
    return Section(title, lines, [])


SCENARIOS: dict[str, Callable[[Config, str, Data], Section]] = {
    "s1": s1,
    "s2": s2,
    "s3": s3,
    "s4": s4,
    "s5": s5,
    "s6": s6,
    "s7": s7,
    "ir": ir,
}


# --- the yardstick ---------------------------------------------------------------------------


def pgbench(cfg: Config) -> str:
    """`pgbench -S -M prepared -c 8 -T <seconds>` on its own scratch database: tps."""
    name = "agora_bench_pgbench"
    asyncio.run(_recreate(cfg, name))
    url = cfg.server
    base = [
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
    ]
    env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", str(cfg.pgbench_scale), *base, name],
                       env=env, check=True, capture_output=True)  # fmt: skip
        proc = subprocess.run(
            ["pgbench", "-S", "-M", "prepared", "-c", "8", "-j", "2",
             "-T", str(cfg.pgbench_seconds), *base, name],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
    finally:
        asyncio.run(_drop(cfg, name))
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", proc.stdout)
    if not match:
        raise RuntimeError(f"cannot parse pgbench's output:\n{proc.stdout}")
    return (
        f"`pgbench -S -M prepared -c 8 -j 2 -T {cfg.pgbench_seconds}` (scale "
        f"{cfg.pgbench_scale}): **{float(match[1]):,.0f} tps**"
    )


async def _drop(cfg: Config, name: str) -> None:
    conn = await asyncpg.connect(cfg.dsn("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def server_url(text: str | None) -> URL:
    return make_url(text or "postgresql://postgres@127.0.0.1:5432/postgres")


__all__ = ["SCENARIOS", "Config", "Data", "Goal", "Section", "ms", "pgbench", "server_url"]
