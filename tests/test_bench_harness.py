"""Smoke test of the benchmark harness (`python -m bench`): it runs end to end, tiny.

Not a measurement: one round of 1 s per side, 50 users. It checks that the harness still
starts both servers of a scenario, drives them with wrk, parses wrk's figures and writes the
report, and that no request failed on either side (a non-2xx in a benchmark is a bug).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.databases import require_postgres

ROW = re.compile(
    r"^\| \*\*(?P<side>[^*]+)\*\* \| median \(min-max\) \| \*\*(?P<rps>[\d,]+)\*\* .*? \| "
    r"(?P<cpu>[\d,]+) \| .*? \| (?P<non2xx>\d+) \| (?P<errors>\d+) \|$",
    re.M,
)


def _sections(report: str) -> dict[str, str]:
    parts = re.split(r"^## ", report, flags=re.M)
    return {part.splitlines()[0].split(":", 1)[0]: part for part in parts[1:]}


def _server(database_url: str) -> str:
    """The PostgreSQL server of `database_url`, as the harness takes it (`--postgres`)."""
    url = make_url(database_url).set(drivername="postgresql", database="postgres")
    return url.render_as_string(hide_password=False)


def _run_module(
    module: str, args: list[str], repo_root: Path, subprocess_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=repo_root,
        env={**subprocess_env, "PYTHONPATH": str(repo_root)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_bench_harness_smoke(
    pg_database_url: str,  # PostgreSQL is up (or the test is skipped / fails loudly)
    repo_root: Path,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    if shutil.which("wrk") is None:
        if require_postgres():  # CI installs wrk; there a missing wrk is a failure
            pytest.fail("wrk is not installed (apt-get install wrk)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    output = tmp_path / "RESULTS.md"
    proc = _run_module(
        "bench",
        ["s1", "s6", "s7", "--quick", "--no-pgbench", "--warmup", "0", "--users", "50",
         "--postgres", _server(pg_database_url), "--output", str(output)],
        repo_root,
        subprocess_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = output.read_text()
    assert report.startswith("# Benchmark results")
    sections = _sections(report)
    assert {"Summary", "S1", "S6", "S7"} <= set(sections)
    for name, baseline in (("S1", "Starlette + asyncpg"), ("S7", "Starlette + aiosqlite")):
        rows = {m["side"]: m for m in ROW.finditer(sections[name])}
        assert set(rows) == {"Agora", baseline}, sections[name]
        for row in rows.values():
            assert int(row["rps"].replace(",", "")) > 0, sections[name]
            assert int(row["cpu"].replace(",", "")) > 0, sections[name]
            assert (row["non2xx"], row["errors"]) == ("0", "0"), sections[name]
        assert re.search(r"Ratio Agora / .*?: \*\*\d+\.\d\d\*\*", sections[name])
    assert "5xx responses (counted by the Lua script): **0**" in sections["S6"]
    summary = sections["Summary"]
    for name in ("S1", "S6", "S7"):
        assert re.search(rf"^\| {name} \| .* \| \*\*(met|missed)\*\* \|$", summary, re.M)


def test_instruction_counter_smoke(
    pg_database_url: str, repo_root: Path, subprocess_env: dict[str, str]
) -> None:
    """`python -m bench.instructions`: every case's requests succeed on both sides (without
    valgrind), and under valgrind the table comes out with a count for each side."""
    tiny = ["--requests", "3", "--warmup", "3", "--users", "50"]
    tiny += ["--postgres", _server(pg_database_url)]
    checked = _run_module("bench.instructions", ["--check", *tiny], repo_root, subprocess_env)
    assert checked.returncode == 0, checked.stderr
    assert "checked: s1, s2, s4, s7" in checked.stdout
    # With the access log on, Agora's side must have written one line per request.
    logged = _run_module(
        "bench.instructions", ["s1", "--check", "--access-log", *tiny], repo_root, subprocess_env
    )
    assert logged.returncode == 0, logged.stderr
    assert "checked: s1" in logged.stdout

    if shutil.which("valgrind") is None or shutil.which("cc") is None:
        if require_postgres():  # CI installs both; there a missing one is a failure
            pytest.fail("valgrind and a C compiler are needed (apt-get install valgrind gcc)")
        pytest.skip("valgrind or a C compiler is not installed")
    counted = _run_module("bench.instructions", ["s7", *tiny], repo_root, subprocess_env)
    assert counted.returncode == 0, counted.stderr
    row = re.search(r"^\| S7 .*? \| ([\d,]+) \| ([\d,]+) \| (\d\.\d{3}) \|$", counted.stdout, re.M)
    assert row, counted.stdout
    agora, baseline = (int(row[i].replace(",", "")) for i in (1, 2))
    # Both sides ran their requests under instrumentation; Agora does more per request.
    assert 0 < baseline < agora
