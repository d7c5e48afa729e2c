"""`agora serve --workers N` in a subprocess, for tests of multi-process behaviour."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

STARTED = "Application startup complete"


@dataclass
class Served:
    """The server's address, and its output (stdout and stderr, one string per line),
    collected as it comes and complete once the `serving` block has exited."""

    base_url: str
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def serving_workers(
    env: dict[str, str], port: int, *, workers: int = 2, timeout: float = 60
) -> Iterator[Served]:
    """Run the service with `workers` processes; enter once every worker has completed its
    lifespan's startup, so each accepts connections (files a worker writes while it builds
    the app, such as its metrics, appear before that). Terminated on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agora", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(f"http://127.0.0.1:{port}")
    reader = threading.Thread(target=lambda: served.lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while sum(STARTED in line for line in served.lines) < workers:
            assert proc.poll() is None, served.output
            assert time.monotonic() < deadline, f"the workers did not start in {timeout:.0f} s"
            time.sleep(0.1)
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
