"""The transfers benchmark runs end to end (tiny numbers; PostgreSQL only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url


def test_transfers_benchmark_smoke(
    pg_database_url: str, repo_root: Path, subprocess_env: dict[str, str]
) -> None:
    server = make_url(pg_database_url).set(drivername="postgresql", database="postgres")
    env = {**subprocess_env, "BENCH_POSTGRES_URL": server.render_as_string(hide_password=False)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.transfers",
            "--transfers",
            "20",
            "--clients",
            "4",
            "--connections",
            "2",
            "--members",
            "4",
        ],
        env=env,
        cwd=str(repo_root),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| HTTP (uvicorn + agora) | 20 |" in proc.stdout
    assert "| raw asyncpg | 20 |" in proc.stdout
    assert "ratio vs raw" in proc.stdout
