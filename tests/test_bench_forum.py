"""Smoke test of bench/forum.py: it runs end to end on a tiny forum (not a measurement)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.databases import postgres_server_url


def test_forum_benchmark_runs_on_a_tiny_dataset(
    pg_database_url: str,  # PostgreSQL is up (or the test is skipped / fails loudly)
    repo_root: Path,
    subprocess_env: dict[str, str],
) -> None:
    server = postgres_server_url().set(drivername="postgresql")
    env = {**subprocess_env, "PYTHONPATH": str(repo_root)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.forum",
            "--posts",
            "60",
            "--users",
            "3",
            "--tags",
            "5",
            "--rounds",
            "1",
            "--calls",
            "1",
            "--server",
            server.set(database="postgres").render_as_string(hide_password=False),
        ],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| deepest cursor page |" in proc.stdout
    assert "deep cursor / first page:" in proc.stdout
