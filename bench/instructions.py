"""Instructions per request, Agora vs the baselines, counted by valgrind (callgrind).

    uv run python -m bench.instructions                  # S1, S2, S4, S7; ~3 minutes
    uv run python -m bench.instructions s1 s4 --requests 400

Wall-clock figures on a shared 2-core machine drift by 10-40% between runs minutes apart;
instruction counts do not: the same code, data and requests give the same count to within
~0.1%, whatever else the machine is doing. So this is the tool for before/after comparisons
of a change (run it on both commits); `python -m bench` remains the measure of throughput.

Each side runs in its own process under `valgrind --tool=callgrind --instr-atstart=no`: the
app (Agora's `create_app`, or the Starlette baseline of `bench/baselines`) is built and its
lifespan entered, `--warmup` requests are sent through the ASGI interface with no server and
no sockets (routing, middleware, dependencies, SQL, serialization: what differs between the
two sides; the HTTP server's share would be the same for both), then instrumentation is
switched on for `--requests` requests (seeded random ids, tokens and transfers, the same
for both sides) and off again. The figure is the instructions of the client and the app
together per request; PostgreSQL runs in its own, uncounted, process, and Agora's access
log is off (logging at WARNING) unless `--access-log` turns it on as the wall-clock
scenarios have it (JSON lines written to a file; the write itself is the kernel's). The
ratio is the baseline's count over Agora's: lower than the CPU ratios of `RESULTS.md`, which
include the HTTP server's share (the same on both sides).

Needs valgrind and a C compiler (Debian: `apt-get install valgrind gcc`): a 3-line shim
built at run time issues callgrind's start/stop requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench.harness import REPO_ROOT
from bench.scenarios import POOL, SECRET, Config, Data, server_url

CASES = {
    "s1": ("GET /api/v1/users/{id}", "pg", "pg_app"),
    "s2": ("GET /api/v1/users/me", "pg", "pg_app"),
    "s4": ("POST /api/v1/credits/transfers", "pg", "pg_app"),
    "s7": ("GET /api/v1/users/{id} on SQLite", "sqlite", "sqlite_app"),
}
SHIM = """#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("requests"); }
"""

Send = Callable[[str, str, list[tuple[bytes, bytes]], bytes], Awaitable[int]]


# --- the child: one side of one case, in process ----------------------------------------


def _client(app: Any) -> Send:
    async def send(method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
        }  # fmt: skip
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        status = 0

        async def reply(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, reply)
        return status

    return send


def _bearer(token: str) -> tuple[bytes, bytes]:
    return (b"authorization", b"Bearer " + token.encode())


def _requests(case: str, users: int, tokens: list[tuple[int, str]], n: int) -> list[Any]:
    """`n` requests of `case`, the same for both sides (seeded)."""
    rng = random.Random(9)
    host = [(b"host", b"bench"), (b"user-agent", b"bench")]
    out: list[Any] = []
    for _ in range(n):
        if case in ("s1", "s7"):
            out.append(("GET", f"/api/v1/users/{rng.randint(1, users)}", host, b""))
        elif case == "s2":
            out.append(("GET", "/api/v1/users/me", [*host, _bearer(rng.choice(tokens)[1])], b""))
        else:
            (_, token), (recipient, _) = rng.sample(tokens, 2)
            cents = rng.randint(1, 499)
            amount = f"{cents // 100}.{cents % 100:02d}"
            body = orjson.dumps({"to_user_id": recipient, "amount": amount})
            length = (b"content-length", str(len(body)).encode())
            json = (b"content-type", b"application/json")
            out.append(
                ("POST", "/api/v1/credits/transfers", [*host, _bearer(token), json, length], body)
            )
    return out


async def _child(args: argparse.Namespace) -> None:
    if args.side == "agora":
        # Logging at WARNING: no access log, unless asked (see the module docstring).
        os.environ.update(AGORA_ENV="production", AGORA_DATABASE_URL=args.url,
                          AGORA_SECRET_KEY=SECRET, AGORA_POOL_SIZE=str(POOL),
                          AGORA_LOG_LEVEL="info" if args.access_log else "warning")  # fmt: skip
        from agora.app import create_app

        app: Any = create_app()
        if args.access_log:  # JSON lines to a file, as `agora serve` in the HTTP scenarios
            from agora.config import load_settings
            from agora.logs import configure_logging

            log_path = Path(args.tokens).with_name(f"access.{args.case}.log")
            configure_logging(load_settings(), stream=log_path.open("w"))
    else:
        os.environ.update(BENCH_SECRET_KEY=SECRET, BENCH_POOL_SIZE=str(POOL))
        os.environ["BENCH_DSN" if CASES[args.case][1] == "pg" else "BENCH_SQLITE_PATH"] = args.url
        module = __import__(f"bench.baselines.{CASES[args.case][2]}", fromlist=["create_app"])
        app = module.create_app()
    send = _client(app)
    every = _requests(args.case, args.users, args.token_list, args.warmup + args.requests)
    async with app.router.lifespan_context(app):
        for request in every[: args.warmup]:
            _check(args, request, await send(*request))
        shim = None
        if args.shim:
            import ctypes

            shim = ctypes.CDLL(args.shim)
            shim.start()
        statuses = [await send(*request) for request in every[args.warmup :]]
        if shim is not None:
            shim.stop()
        # Every counted request succeeded too (an error response is cheaper than an answer).
        for request, status in zip(every[args.warmup :], statuses, strict=True):
            _check(args, request, status)
    if args.side == "agora" and args.access_log:  # what was counted had its log lines
        lines = log_path.read_text().count('"logger":"agora.access"')
        if lines < len(every):
            raise SystemExit(f"agora {args.case}: {lines} access-log lines for {len(every)}")


def _check(args: argparse.Namespace, request: Any, status: int) -> None:
    if status not in (200, 201):
        raise SystemExit(f"{args.side} {args.case}: {request[0]} {request[1]} -> {status}")


# --- the parent: data, one valgrind process per side, the table ------------------------


def _count(case: str, side: str, url: str, run: Run) -> int:
    """Instructions per request of one side of one case (0 with `check`: no valgrind)."""
    out = run.work / f"callgrind.{case}.{side}"
    command = [
        sys.executable, "-m", "bench.instructions", "--child", case, "--side", side,
        "--url", url, "--tokens", str(run.work / "tokens.txt"), "--users", str(run.users),
        "--warmup", str(run.warmup), "--requests", str(run.requests),
        *(["--access-log"] if run.access_log else []),
    ]  # fmt: skip
    if not run.check:
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={out}"]  # fmt: skip
        command = [*valgrind, *command, "--shim", str(run.work / "shim.so")]
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    failed = f"{case}/{side} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    if run.check:
        if proc.returncode != 0:
            raise RuntimeError(failed)
        return 0
    dumps = [p for p in run.work.glob(f"callgrind.{case}.{side}*") if p.name != out.name]
    totals = [
        int(line.split()[1])
        for p in dumps
        for line in p.read_text().splitlines()
        if line.startswith("totals:")
    ]
    if proc.returncode != 0 or not totals or max(totals) == 0:
        raise RuntimeError(failed)
    return int(max(totals) // run.requests)


@dataclass(frozen=True)
class Run:
    work: Path  # holds tokens.txt (and the shim, callgrind's output)
    users: int
    requests: int
    warmup: int
    check: bool = False
    access_log: bool = False


def count(cases: list[str], data: Data, run: Run) -> dict[tuple[str, str], int]:
    """Instructions per request of each side of each case, on `data`'s databases."""
    if not run.check:
        _build_shim(run.work)
    urls: dict[str, tuple[str, str]] = {}
    if any(CASES[c][1] == "pg" for c in cases):
        data.postgres()  # also writes tokens.txt
        urls["pg"] = (data.pg_url, data.cfg.dsn(data.cfg.members_db))
    if any(CASES[c][1] == "sqlite" for c in cases):
        path = data.sqlite()
        urls["sqlite"] = (f"sqlite+aiosqlite:///{path}", path)
        if not (run.work / "tokens.txt").exists():
            (run.work / "tokens.txt").write_text("")
    jobs = [
        (case, side, urls[CASES[case][1]][0 if side == "agora" else 1])
        for case in cases
        for side in ("agora", "baseline")
    ]

    def one(job: tuple[str, str, str]) -> int:
        return _count(*job, run)

    # Two at a time: counts do not depend on what else runs.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([(c, s) for c, s, _ in jobs], pool.map(one, jobs), strict=True))


def table(cases: list[str], counts: dict[tuple[str, str], int]) -> list[str]:
    lines = ["| case | Agora | baseline | baseline / Agora |", "|---|---|---|---|"]
    for case in cases:
        a, b = counts[case, "agora"], counts[case, "baseline"]
        lines.append(f"| {case.upper()} {CASES[case][0]} | {a:,} | {b:,} | {b / a:.3f} |")
    return lines


def available() -> str | None:
    """Why instructions cannot be counted here, or None."""
    if shutil.which("valgrind") is None or shutil.which("cc") is None:
        return "valgrind and a C compiler are needed (apt-get install valgrind gcc)"
    return None


def _build_shim(work: Path) -> None:
    missing = available()
    if missing:
        raise SystemExit(missing)
    (work / "shim.c").write_text(SHIM)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(work / "shim.so"),
                    str(work / "shim.c")], check=True)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("cases", nargs="*", default=list(CASES), help="any of s1 s2 s4 s7")
    parser.add_argument("--requests", type=int, default=200, help="counted requests per side")
    parser.add_argument("--warmup", type=int, default=300, help="uncounted requests first")
    parser.add_argument("--users", type=int, default=2000, help="seeded users")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL"))
    parser.add_argument(
        "--check", action="store_true", help="run the requests without valgrind; count nothing"
    )
    parser.add_argument(
        "--access-log", action="store_true",
        help="Agora writes its access log (JSON lines, to a file) as in the HTTP scenarios",
    )  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    parser.add_argument("--shim", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.case = args.child
        lines = Path(args.tokens).read_text().splitlines()
        args.token_list = [(int(i), token) for i, token in (line.split() for line in lines)]
        uvloop.run(_child(args))  # the event loop `agora serve` and the baselines run on
        return
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    work = Path(tempfile.mkdtemp(prefix="agora-instructions-"))
    cfg = Config(server=server_url(args.postgres), users=args.users, workdir=work)
    data = Data(cfg)
    run = Run(
        work, args.users, args.requests, args.warmup, check=args.check, access_log=args.access_log
    )
    try:
        counts = count(args.cases, data, run)
        if args.check:
            print(f"checked: {', '.join(args.cases)} (every request answered 2xx on both sides)")
            return
        print(f"Instructions per request ({args.requests} counted after {args.warmup}, "
              f"{args.users:,} users; in process, no HTTP server):\n")  # fmt: skip
        print("\n".join(table(args.cases, counts)))
    finally:
        data.drop()
        shutil.rmtree(work, ignore_errors=True)  # the SQLite file, tokens, callgrind's output


if __name__ == "__main__":
    main()
