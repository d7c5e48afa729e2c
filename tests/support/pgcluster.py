"""Throwaway PostgreSQL clusters (and streaming replicas) that a test starts itself.

Tests that restart a server, stop a replica or kill every backend must never do that to the
shared server on 5432, so they get a cluster of their own: ``initdb`` into a temporary
directory, ``pg_ctl`` on a free loopback port, trust authentication, sockets inside the data
directory. Run as root (CI and the dev machine), every server command runs as the
``postgres`` OS user, because PostgreSQL refuses to run as root.

    with throwaway_cluster(tmp_path) as primary:
        url = primary.url("postgres")          # postgresql+asyncpg://postgres@127.0.0.1:PORT/postgres
        primary.restart()
        with primary.replica(tmp_path / "replica") as replica:
            ...

The binaries come from the newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout) or
from ``pg_config --bindir``; `available()` says whether any were found, so a test can skip (or
fail when AGORA_REQUIRE_POSTGRES is set) with a reason.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

_PG_USER = "postgres"


def bindir() -> Path | None:
    """Directory holding initdb/pg_ctl/pg_basebackup, or None when PostgreSQL is absent."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").exists():
            return candidate
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        path = Path(out.stdout.strip())
        if (path / "initdb").exists():
            return path
    return None


def available() -> str | None:
    """None when throwaway clusters can be made here, else the reason they cannot."""
    if bindir() is None:
        return "no PostgreSQL server binaries (initdb) on this machine"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_PG_USER)
        except KeyError:
            return "running as root but there is no 'postgres' OS user to run the server as"
    return None


def require() -> None:
    """Skip the calling test without throwaway-cluster support (fail under
    AGORA_REQUIRE_POSTGRES, where a skipped PostgreSQL check is a failure)."""
    import pytest

    from tests.support.databases import require_postgres

    reason = available()
    if reason is not None:
        if require_postgres():
            pytest.fail(reason)
        pytest.skip(reason)


@contextlib.contextmanager
def workdir(prefix: str = "agora-pg-") -> Iterator[Path]:
    """A fresh directory for clusters, removed afterwards.

    Deliberately not under pytest's tmp_path: a pytest run starting meanwhile (same user)
    resets /tmp/pytest-of-<user> to 0700, and a server running as `postgres` loses its data
    directory's path.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_pg_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", _PG_USER, "--", *argv]
    return argv


def _chown_to_pg_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(_PG_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(argv: list[str], *, timeout: float = 120) -> None:
    result = subprocess.run(
        _as_pg_user(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


class Cluster:
    """One PostgreSQL server with its own data directory and port."""

    def __init__(self, datadir: Path, port: int) -> None:
        self.datadir = datadir
        self.port = port
        self._bin = bindir() or Path("/nonexistent")

    # -- addresses -------------------------------------------------------------------------
    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{_PG_USER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{_PG_USER}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle -------------------------------------------------------------------------
    def _pg_ctl(self, *args: str, timeout: float = 120) -> None:
        _run(
            [str(self._bin / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60", *args],
            timeout=timeout,
        )

    def start(self) -> None:
        self._pg_ctl("-l", str(self.datadir / "server.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-l", str(self.datadir / "server.log"), "restart")

    def is_running(self) -> bool:
        result = subprocess.run(
            _as_pg_user([str(self._bin / "pg_ctl"), "-D", str(self.datadir), "status"]),
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL string with psql and return its unaligned output."""
        result = subprocess.run(
            [
                str(self._bin / "psql"),
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                _PG_USER,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout.strip()

    @contextlib.contextmanager
    def replica(self, datadir: Path, port: int | None = None) -> Iterator[Cluster]:
        """A streaming replica of this (running) cluster, made with pg_basebackup -R."""
        datadir.mkdir(parents=True, exist_ok=True)
        datadir.chmod(0o700)
        _chown_to_pg_user(datadir)
        _run(
            [
                str(self._bin / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                _PG_USER,
                "-D",
                str(datadir),
                "-R",  # standby.signal + primary_conninfo
                "-X",
                "stream",
                "-c",
                "fast",
            ]
        )
        standby = Cluster(datadir, port or free_port())
        _write_port(datadir, standby.port)
        standby.start()
        try:
            yield standby
        finally:
            with contextlib.suppress(Exception):
                standby.stop("immediate")


def _write_port(datadir: Path, port: int) -> None:
    # postgresql.auto.conf is read last, so this wins over a copied primary's settings.
    with (datadir / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"\nport = {port}\nunix_socket_directories = '{datadir}'\n")


@contextlib.contextmanager
def throwaway_cluster(
    workdir: Path, *, port: int | None = None, settings: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """initdb + start a cluster under `workdir`; stopped (immediately) and removed after."""
    base = bindir()
    if base is None:
        raise RuntimeError("no PostgreSQL server binaries on this machine")
    workdir.mkdir(parents=True, exist_ok=True)
    # The postgres user must be able to reach the data directory through its parents.
    for parent in [workdir, *workdir.parents]:
        if parent == Path("/"):
            break
        with contextlib.suppress(PermissionError):
            parent.chmod(parent.stat().st_mode | 0o711)
    datadir = workdir / "data"
    datadir.mkdir(mode=0o700)
    _chown_to_pg_user(datadir)
    _run(
        [
            str(base / "initdb"),
            "-D",
            str(datadir),
            "-U",
            _PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
    )
    conf = {
        "listen_addresses": "'127.0.0.1'",
        "fsync": "off",
        "full_page_writes": "off",
        "synchronous_commit": "off",
        "max_connections": "100",
        "shared_buffers": "32MB",
        "wal_level": "replica",
        "max_wal_senders": "4",
        "hot_standby": "on",
        **(settings or {}),
    }
    with (datadir / "postgresql.conf").open("a") as f:
        for key, value in conf.items():
            f.write(f"{key} = {value}\n")
    with (datadir / "pg_hba.conf").open("a") as f:
        f.write("host replication all 127.0.0.1/32 trust\n")
    cluster = Cluster(datadir, port or free_port())
    _write_port(datadir, cluster.port)
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)


def wait_until(predicate: object, timeout: float = 30.0, interval: float = 0.1) -> None:
    """Poll a zero-argument callable until it returns truthy (raises TimeoutError)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")
