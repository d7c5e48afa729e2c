"""`agora serve` as a user runs it: a real process on a free port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_migrates_and_answers(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    port = _free_port()
    env = {**subprocess_env, "AGORA_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agora", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "server did not start in 60 s"
                time.sleep(0.2)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "database": "sqlite"}
        assert (tmp_path / "serve.db").exists()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in out
    assert "sqlite" in out


def test_serve_with_unreachable_database_exits_cleanly(subprocess_env: dict[str, str]) -> None:
    env = {
        **subprocess_env,
        "AGORA_DATABASE_URL": "postgresql://agora:pw@127.0.0.1:1/agora",
        "COLUMNS": "200",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "agora", "serve", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "cannot reach the database" in proc.stderr
    assert "pw" not in proc.stderr  # password masked
    assert "Traceback" not in proc.stderr
