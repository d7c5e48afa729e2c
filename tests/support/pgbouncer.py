"""A real PgBouncer (Debian's package) that a test starts in front of a PostgreSQL server.

    with pgbouncer(tmp_path, server_port=5432, databases={"agora": "agora_test_1"}) as port:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/agora"

Transaction pooling, trust authentication, a free loopback port, no Unix socket; the
configuration and the log live in `workdir`. PgBouncer refuses to run as root, so as root it
runs as the `postgres` OS user (like the throwaway clusters).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.pgcluster import free_port

BINARY = "/usr/sbin/pgbouncer"


def available() -> str | None:
    """None when PgBouncer can run here, else the reason it cannot."""
    if shutil.which("pgbouncer") is None and not Path(BINARY).exists():
        return "no pgbouncer binary (Debian package pgbouncer)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' OS user to run PgBouncer as"
    return None


@contextlib.contextmanager
def pgbouncer(
    workdir: Path,
    *,
    server_port: int,
    databases: dict[str, str],
    pool_size: int = 4,
    extra: dict[str, str] | None = None,
) -> Iterator[int]:
    """Run PgBouncer until the block ends; yields its port. `databases`: alias -> dbname."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (workdir / "userlist.txt").write_text('"postgres" ""\n')
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": str(workdir / "userlist.txt"),
        "pool_mode": "transaction",
        "default_pool_size": str(pool_size),
        "max_client_conn": "200",
        "logfile": str(workdir / "pgbouncer.log"),
        "admin_users": "postgres",
        **(extra or {}),
    }
    lines = ["[databases]"]
    lines += [
        f"{alias} = host=127.0.0.1 port={server_port} dbname={name}"
        for alias, name in databases.items()
    ]
    lines += ["", "[pgbouncer]", *(f"{key} = {value}" for key, value in settings.items())]
    config = workdir / "pgbouncer.ini"
    config.write_text("\n".join(lines) + "\n")
    argv = [shutil.which("pgbouncer") or BINARY, str(config)]
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in [workdir, *workdir.parents]:
            if path == Path("/"):
                break
            with contextlib.suppress(PermissionError):
                path.chmod(path.stat().st_mode | 0o711)
        for path in [workdir, *workdir.iterdir()]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        argv = ["runuser", "-u", "postgres", "--", *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_port(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"pgbouncer exited ({proc.returncode}): {out}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"pgbouncer did not listen on {port} in {timeout} s")
        time.sleep(0.05)
