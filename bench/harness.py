"""The harness: servers as real processes, load from wrk, interleaved rounds, Markdown tables.

Every HTTP scenario starts its two servers (Agora and a baseline) as uvicorn processes with
the same flags, warms both up, then runs wrk against them in turn, A B A B ..., so that drift
in the machine's load hits both sides alike. wrk's report is parsed (requests/s, latency
percentiles, non-2xx responses, socket errors) into a `WrkResult`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WRK_DIR = BENCH_DIR / "wrk"
# The uvicorn flags both sides of a comparison run under (`agora serve` uses the same ones).
UVICORN_FLAGS = ("--loop", "uvloop", "--http", "httptools", "--no-access-log")


class HarnessError(RuntimeError):
    """A benchmark could not run (a tool is missing, a server did not start...)."""


def ensure_wrk() -> str:
    """wrk's path; installed with apt-get when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing it with apt-get", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise HarnessError("wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu)")


# --- wrk output -------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    latency: dict[int, float]  # percentile -> seconds (50, 75, 90, 99)
    non_2xx: int
    socket_errors: int
    status_5xx: int | None = None  # only when the Lua script counts them

    @property
    def p50(self) -> float:
        return self.latency[50]

    @property
    def p99(self) -> float:
        return self.latency[99]


def parse_wrk(output: str) -> WrkResult:
    """Parse `wrk --latency` output (and the `5xx: N` line of scripts that count them)."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    if not rps or not total:
        raise HarnessError(f"cannot parse wrk's output:\n{output}")
    latency = {
        int(m[1]): _seconds(m[2])
        for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+(?:us|ms|s|m))\s*$", output, re.M)
    }
    if 50 not in latency or 99 not in latency:
        raise HarnessError(f"wrk printed no latency distribution (--latency):\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    status_5xx = re.search(r"^5xx: (\d+)$", output, re.M)
    return WrkResult(
        requests=int(total[1]),
        rps=float(rps[1]),
        latency=latency,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        status_5xx=int(status_5xx[1]) if status_5xx else None,
    )


@dataclass(frozen=True)
class Load:
    """One wrk run: `wrk -t1 -c<connections> -d<seconds> --latency -s <script> <url> -- args`."""

    script: str  # file name under bench/wrk/
    path: str  # the URL path wrk starts with (scripts may build their own)
    connections: int
    args: tuple[str, ...] = ()


def run_wrk(wrk: str, port: int, load: Load, seconds: float) -> WrkResult:
    command = [
        wrk,
        "-t1",
        f"-c{load.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(WRK_DIR / load.script),
        f"http://127.0.0.1:{port}{load.path}",
        "--",
        *load.args,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise HarnessError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return parse_wrk(proc.stdout)


# --- servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process on a loopback port, its output going to a log file (not a tty)."""

    name: str
    command: list[str]
    env: dict[str, str]
    ready_path: str
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        command = [arg.replace("{port}", str(self.port)) for arg in self.command]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"{self.name} exited at startup; see {self.log}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise HarnessError(f"{self.name} did not answer {url} within {timeout:.0f} s")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far (Linux /proc)."""
        assert self.process is not None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@contextmanager
def running(*servers: Server) -> Iterator[None]:
    """Start the servers (side by side: their imports overlap), wait until each answers."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
        yield
    finally:
        for server in servers:
            server.stop()


def uvicorn_command(app: str) -> list[str]:
    """A plain uvicorn process for `app` (a factory), with the flags both sides share."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        "1",
        *UVICORN_FLAGS,
        "--log-level",
        "warning",
    ]


# --- rounds and tables ------------------------------------------------------------------


@dataclass
class Side:
    name: str
    server: Server
    load: Load
    results: list[WrkResult] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # server CPU seconds per request, per round

    def median(self, attr: str = "rps") -> float:
        return statistics.median(float(getattr(r, attr)) for r in self.results)


def interleave(
    wrk: str, sides: Sequence[Side], *, rounds: int, seconds: float, warmup: float
) -> None:
    """Warm every side up, then run wrk on each in turn for `rounds` rounds (A B A B ...)."""
    for side in sides:
        if warmup > 0:
            run_wrk(wrk, side.server.port, side.load, warmup)
    for _ in range(rounds):
        for side in sides:
            cpu = side.server.cpu_seconds()
            result = run_wrk(wrk, side.server.port, side.load, seconds)
            side.results.append(result)
            side.cpu.append((side.server.cpu_seconds() - cpu) / max(1, result.requests))


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def rps_table(sides: Sequence[Side]) -> list[str]:
    """Per-round requests/s and latencies of each side, and their medians and ranges."""
    lines = [
        "| side | round | requests/s | server CPU µs/request | p50 ms | p99 ms | non-2xx | "
        "socket errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for side in sides:
        for i, (r, cpu) in enumerate(zip(side.results, side.cpu, strict=True), 1):
            lines.append(
                f"| {side.name} | {i} | {r.rps:,.0f} | {cpu * 1e6:,.0f} | {ms(r.p50)} | "
                f"{ms(r.p99)} | {r.non_2xx} | {r.socket_errors} |"
            )
        rates = [r.rps for r in side.results]
        lines.append(
            f"| **{side.name}** | median (min-max) | **{statistics.median(rates):,.0f}** "
            f"({min(rates):,.0f}-{max(rates):,.0f}) | {statistics.median(side.cpu) * 1e6:,.0f} | "
            f"{ms(side.median('p50'))} | {ms(side.median('p99'))} | "
            f"{sum(r.non_2xx for r in side.results)} | "
            f"{sum(r.socket_errors for r in side.results)} |"
        )
    return lines


def verdict(value: float, goal: float, *, higher_is_better: bool = True) -> str:
    met = value >= goal if higher_is_better else value <= goal
    return "**met**" if met else "**missed**"
