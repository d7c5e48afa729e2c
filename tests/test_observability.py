"""Operations: /metrics, request ids, structured logs, and 503s (not hangs, not 500s) when
the database is exhausted or gone."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url, text

from agora.app import create_app
from agora.config import Settings
from agora.db.api import ReadUoW
from agora.logs import JsonFormatter, RequestIdFilter, configure_logging
from agora.observability import fastapi_telemetry
from tests.support.tcpproxy import OutageProxy
from tests.support.workers import serving_workers

log = logging.getLogger("tests.observability")
HEX32 = re.compile(r"[0-9a-f]{32}")


def ops_app(settings: Settings) -> FastAPI:
    """The real application plus test-only routes that use the database."""
    app = create_app(settings)
    app.state.holding = asyncio.Event()
    app.state.release = asyncio.Event()

    @app.get("/things/{thing_id}")
    async def get_thing(thing_id: int, uow: ReadUoW) -> dict[str, int]:
        value = (
            await uow.session.execute(text("SELECT CAST(:v AS INTEGER)"), {"v": thing_id})
        ).scalar_one()
        log.info("thing %s read", value)
        return {"id": value}

    @app.get("/hold")
    async def hold(uow: ReadUoW) -> dict[str, str]:
        """Keeps its connection checked out until the test sets `app.state.release`."""
        await uow.session.execute(text("SELECT 1"))
        app.state.holding.set()
        await app.state.release.wait()
        return {"status": "released"}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """Run the app's lifespan (its own engine, instrumented) around a client."""
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def sample(metrics_text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` whose labels include `labels`, if any."""
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return float(s.value)
    return None


def sqlite_settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'ops.db'}", env="test", **overrides)  # type: ignore[arg-type]


# --- metrics -------------------------------------------------------------------------------


async def test_metrics_count_requests_by_route_template(database_url: str) -> None:
    async with serving(ops_app(Settings(database_url=database_url, env="test"))) as http:
        before = (await http.get("/metrics")).text
        for thing_id in (7, 8):
            assert (await http.get(f"/things/{thing_id}")).status_code == 200
        assert (await http.get("/no/such/page")).status_code == 404
        response = await http.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    route = "/things/{thing_id}"
    assert sample(body, "http_requests_total", route=route, method="GET", status="200") == 2
    assert sample(body, "http_requests_total", route="<unmatched>", status="404") == 1
    assert "/things/7" not in body
    assert "/no/such/page" not in body
    assert sample(body, "http_request_duration_seconds_count", route=route) == 2
    statements_before = sample(before, "db_statements_total", pool="primary") or 0
    assert (sample(body, "db_statements_total", pool="primary") or 0) >= statements_before + 2


async def test_pool_gauges_move_while_a_request_holds_a_connection(database_url: str) -> None:
    app = ops_app(Settings(database_url=database_url, env="test", pool_size=3))
    async with serving(app) as http:
        idle = (await http.get("/metrics")).text
        holder = asyncio.create_task(http.get("/hold"))
        await asyncio.wait_for(app.state.holding.wait(), 30)
        busy = (await http.get("/metrics")).text
        app.state.release.set()
        assert (await holder).status_code == 200
        after = (await http.get("/metrics")).text

    assert sample(idle, "db_pool_size", pool="primary") == 3
    assert sample(idle, "db_pool_checked_out", pool="primary") == 0
    assert sample(busy, "db_pool_checked_out", pool="primary") == 1
    assert sample(busy, "http_requests_in_progress") == 2  # /hold and this /metrics
    assert sample(after, "db_pool_checked_out", pool="primary") == 0


async def test_apps_in_one_process_have_their_own_metrics(tmp_path: Path) -> None:
    first, second = create_app(sqlite_settings(tmp_path)), create_app(sqlite_settings(tmp_path))
    async with serving(first) as one, serving(second) as two:
        await one.get("/health/live")
        one_text, two_text = (await one.get("/metrics")).text, (await two.get("/metrics")).text
    assert sample(one_text, "http_requests_total", route="/health/live") == 1
    assert sample(two_text, "http_requests_total", route="/health/live") is None


async def test_metrics_can_be_switched_off(tmp_path: Path) -> None:
    async with serving(create_app(sqlite_settings(tmp_path, metrics_enabled=False))) as http:
        assert (await http.get("/metrics")).status_code == 404


# --- FastAPI's OpenTelemetry (AGORA_OPENTELEMETRY) ------------------------------------------

# A fresh interpreter per case: an SDK's global provider can be set once per process.
OTEL_SCRIPT = """
import asyncio, json, sys
import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()

def configure_sdk():
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

if sys.argv[1] == "before":  # as `opentelemetry-instrument` does: before the app is built
    configure_sdk()
from agora.app import create_app

app = create_app()
if sys.argv[1] == "after":  # an SDK set up once the app exists
    configure_sdk()

async def main():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/health/live")).status_code == 200
    print(json.dumps([span.name for span in exporter.get_finished_spans()]))

asyncio.run(main())
"""


def _spans(tmp_path: Path, env: dict[str, str], mode: str, sdk: str) -> list[str]:
    env = {**env, "AGORA_DATABASE_URL": f"sqlite:///{tmp_path / 'otel.db'}",
           "AGORA_OPENTELEMETRY": mode}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", OTEL_SCRIPT, sdk], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return names


@pytest.mark.parametrize(
    ("mode", "sdk", "traced"),
    [
        ("auto", "before", True),  # the usual way: the SDK configured before the app
        ("auto", "after", False),  # decided when the app was built: not traced
        ("on", "after", True),  # FastAPI's own check on every request finds it
        ("off", "before", False),
    ],
)
def test_fastapi_spans_follow_the_opentelemetry_setting(
    tmp_path: Path, subprocess_env: dict[str, str], mode: str, sdk: str, traced: bool
) -> None:
    names = _spans(tmp_path, subprocess_env, mode, sdk)
    assert any("/health/live" in name for name in names) is traced, names


def test_opentelemetry_auto_is_on_only_with_a_provider_or_fastapi_auto_configure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE", raising=False)
    auto = sqlite_settings(tmp_path)
    off = {"tracing": False, "metrics": False, "logs": False}
    assert fastapi_telemetry(auto) == off  # no SDK in this process
    assert fastapi_telemetry(sqlite_settings(tmp_path, opentelemetry="on")) is None
    for module, getter, provider in [
        (trace, "get_tracer_provider", TracerProvider()),
        (metrics, "get_meter_provider", MeterProvider()),
        (_logs, "get_logger_provider", LoggerProvider()),
    ]:
        with monkeypatch.context() as patched:
            patched.setattr(module, getter, lambda provider=provider: provider)
            assert fastapi_telemetry(auto) is None, getter  # FastAPI's defaults
            assert fastapi_telemetry(sqlite_settings(tmp_path, opentelemetry="off")) == off
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")  # FastAPI sets one up at startup
    assert fastapi_telemetry(auto) is None


# --- request ids and logs --------------------------------------------------------------------


async def test_request_id_is_taken_from_the_request_or_generated(tmp_path: Path) -> None:
    async with serving(create_app(sqlite_settings(tmp_path))) as http:
        given = await http.get("/health/live", headers={"X-Request-ID": "edge-7f3a.1:2_b"})
        generated = [await http.get("/health/live") for _ in range(2)]
        refused = [
            await http.get("/health/live", headers={"X-Request-ID": bad})
            for bad in ("a" * 129, "has space", "<script>", "")
        ]
    assert given.headers["x-request-id"] == "edge-7f3a.1:2_b"
    ids = [r.headers["x-request-id"] for r in generated + refused]
    assert all(HEX32.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


async def test_log_lines_of_a_request_carry_its_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO)
    async with serving(ops_app(sqlite_settings(tmp_path))) as http:
        response = await http.get("/things/5", headers={"X-Request-ID": "req-42"})
        other = await http.get("/things/6")
    log.info("outside any request")

    assert response.status_code == 200
    by_message = {r.getMessage(): r for r in caplog.records}
    assert by_message["thing 5 read"].request_id == "req-42"  # type: ignore[attr-defined]
    access = [r for r in caplog.records if r.name == "agora.access"]
    assert [r.request_id for r in access] == [  # type: ignore[attr-defined]
        "req-42",
        other.headers["x-request-id"],
    ]
    assert access[0].getMessage().startswith("GET /things/5 200")
    assert by_message["thing 6 read"].request_id == other.headers["x-request-id"]  # type: ignore[attr-defined]
    assert by_message["outside any request"].request_id == "-"  # type: ignore[attr-defined]


async def test_an_unexpected_error_keeps_the_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    async with serving(ops_app(sqlite_settings(tmp_path))) as http:
        response = await http.get("/boom", headers={"X-Request-ID": "req-boom"})
        metrics = (await http.get("/metrics")).text
    assert response.status_code == 500
    assert response.json()["error"] == "InternalError"
    assert response.headers["x-request-id"] == "req-boom"
    [error] = [r for r in caplog.records if r.name == "agora.errors"]
    assert error.request_id == "req-boom"  # type: ignore[attr-defined]
    assert sample(metrics, "http_requests_total", route="/boom", status="500") == 1


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`configure_logging` rewires the root and uvicorn loggers: put them back after."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.level, logger.propagate))
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.usefixtures("restore_logging")
async def test_production_logs_are_json_lines_with_the_request_id(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging(sqlite_settings(tmp_path, log_format="json"), stream=stream)
    async with serving(ops_app(sqlite_settings(tmp_path))) as http:
        await http.get("/things/3", headers={"X-Request-ID": "req-json"})

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    thing = next(entry for entry in lines if entry["message"] == "thing 3 read")
    assert thing["request_id"] == "req-json"
    assert thing["level"] == "INFO"
    assert thing["logger"] == "tests.observability"
    access = next(entry for entry in lines if entry["logger"] == "agora.access")
    assert access["request_id"] == "req-json"
    assert (access["status"], access["route"]) == (200, "/things/{thing_id}")
    assert (access["method"], access["path"]) == ("GET", "/things/3")
    assert access["message"] == f"GET /things/3 200 {access['duration_ms']:.1f} ms"
    written = datetime.fromisoformat(access["time"])
    assert abs((datetime.now(UTC) - written).total_seconds()) < 60


def test_json_log_times_are_utc_milliseconds_of_the_record() -> None:
    """The formatter caches each second's date text; every line still shows its own record's
    time exactly as `isoformat` would, across seconds, rounding carries and before 1970."""
    formatter = JsonFormatter()
    rng = random.Random(5)
    edges = [0.0, 1.9999996, 1.0000004, 1764590000.9995, 1764590000.0005, -0.5, -1e-7, -86400.25]
    created = [*edges, *(rng.uniform(-1e9, 4e9) for _ in range(5000))]
    created += [1764590000 + i / 7 for i in range(50)]  # many lines within a few seconds
    for value in created:
        record = logging.LogRecord("agora.access", logging.INFO, __file__, 1, "line", None, None)
        record.created = value
        entry = json.loads(formatter.format(record))
        expected = datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")
        assert entry["time"] == expected, value


@pytest.mark.usefixtures("restore_logging")
async def test_development_logs_are_readable_lines(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging(sqlite_settings(tmp_path), stream=stream)  # env=test: text
    async with serving(ops_app(sqlite_settings(tmp_path))) as http:
        await http.get("/things/4", headers={"X-Request-ID": "req-text"})
    line = next(li for li in stream.getvalue().splitlines() if "thing 4 read" in li)
    assert "INFO" in line
    assert "[req-text]" in line
    assert not line.startswith("{")


# --- overload and outages ----------------------------------------------------------------------


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["error"] == "DatabaseUnavailable"
    assert isinstance(body["detail"], str)
    assert body["detail"]


async def test_an_exhausted_pool_answers_503_quickly_then_recovers(database_url: str) -> None:
    settings = Settings(
        database_url=database_url, env="test", pool_size=1, max_overflow=0, pool_timeout=0.5
    )
    app = ops_app(settings)
    async with serving(app) as http:
        holder = asyncio.create_task(http.get("/hold"))
        await asyncio.wait_for(app.state.holding.wait(), 30)
        # Bounded: with no pool_timeout in force these would wait for the holder forever.
        turned_away = await asyncio.wait_for(
            asyncio.gather(*(http.get("/things/1") for _ in range(3))), 30
        )
        app.state.release.set()
        assert (await holder).status_code == 200
        after = await http.get("/things/1")
        metrics = (await http.get("/metrics")).text

    for response in turned_away:
        assert_unavailable(response)
        assert "busy" in response.json()["detail"]
    assert after.status_code == 200
    assert after.json() == {"id": 1}
    assert sample(metrics, "db_pool_checkout_timeouts_total", pool="primary") == 3
    assert sample(metrics, "http_requests_total", route="/things/{thing_id}", status="503") == 3


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1:1/nowhere", "sqlite:///{tmp}/missing/dir/x.db"],
    ids=["postgresql-closed-port", "sqlite-missing-directory"],
)
async def test_an_unreachable_database_is_503_not_500(url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=url.format(tmp=tmp_path), env="test")
    async with serving(ops_app(settings)) as http:
        assert_unavailable(await http.get("/things/1"))
        # The hottest read takes its unit with `read_unit(request)`, not `ReadUoW`: the same.
        assert_unavailable(await http.get("/api/v1/users/1"))


async def test_a_database_that_never_answers_is_503_not_a_hang() -> None:
    """A host that accepts TCP but never speaks (gone behind a firewall, overloaded)."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{port}/x", env="test", connect_timeout=0.5
    )
    try:
        async with serving(ops_app(settings)) as http:
            response = await asyncio.wait_for(http.get("/things/1"), 30)
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
    assert accepted, "the application never tried to connect"
    assert_unavailable(response)


@pytest.mark.parametrize("pre_ping", [True, False], ids=["pre-ping", "no-pre-ping"])
async def test_the_service_recovers_by_itself_when_the_database_returns(
    pg_database_url: str, pre_ping: bool
) -> None:
    server = make_url(pg_database_url)
    async with OutageProxy(server.host or "127.0.0.1", server.port or 5432).running() as proxy:
        url = server.set(port=proxy.port).render_as_string(hide_password=False)
        settings = Settings(database_url=url, env="test", pool_pre_ping=pre_ping)
        async with serving(ops_app(settings)) as http:
            before = await http.get("/things/1")
            await proxy.down()
            during = [await http.get("/things/1") for _ in range(3)]
            await proxy.up()
            after = [await http.get("/things/1") for _ in range(3)]

    assert before.status_code == 200
    for response in during:
        assert_unavailable(response)
    assert [r.status_code for r in after] == [200, 200, 200]


# --- several worker processes ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _worker_pids(directory: Path, prefix: str) -> set[str]:
    return {p.stem.rsplit("_", 1)[-1] for p in directory.glob(f"{prefix}_*.db")}


def test_metrics_add_up_across_worker_processes(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """`agora serve --workers 2` with PROMETHEUS_MULTIPROC_DIR: /metrics, answered by either
    worker, reports the requests both served and both pools; logs are JSON lines."""
    metrics_dir = tmp_path / "prometheus"
    (metrics_dir).mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"stale")  # from a previous run: removed
    port = _free_port()
    env = {
        **subprocess_env,
        "AGORA_DATABASE_URL": f"sqlite:///{tmp_path / 'mp.db'}",
        "AGORA_POOL_SIZE": "3",
        "AGORA_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    with serving_workers(env, port) as served:
        # Every worker has started: each has published its pool gauges.
        assert len(_worker_pids(metrics_dir, "gauge_livesum")) == 2
        assert "99999" not in _worker_pids(metrics_dir, "counter")
        # A new connection per request, so that both workers get a share.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=served.base_url, limits=limits) as c:
            sent = 0
            while sent < 20 or (len(_worker_pids(metrics_dir, "counter")) < 2 and sent < 200):
                assert c.get("/health/live").status_code == 200
                sent += 1
            assert c.get("/nope", headers={"X-Request-ID": "mp-req-1"}).status_code == 404
            body = c.get("/metrics").text
    out = served.output

    assert sample(body, "http_requests_total", route="/health/live", status="200") == sent
    assert sample(body, "db_pool_size", pool="primary") == 6  # 3 per worker, summed
    # Written on every change in this mode: the scrape itself, in one worker, summed.
    assert sample(body, "http_requests_in_progress") == 1
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    access = [e for e in entries if e["logger"] == "agora.access"]
    assert [e["status"] for e in access if e["request_id"] == "mp-req-1"] == [404]
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # uvicorn logs JSON too


# --- settings ------------------------------------------------------------------------------------


def test_operations_settings_are_validated() -> None:
    from agora.config import LogFormat, LogLevel, SettingsError, load_settings

    settings = load_settings(log_level="debug", log_format="JSON")
    assert (settings.log_level, settings.log_format) == (LogLevel.DEBUG, LogFormat.json)
    assert load_settings().slow_statement_ms == 500
    assert load_settings().log_statement_parameters is False
    with pytest.raises(SettingsError, match="AGORA_LOG_FORMAT"):
        load_settings(log_format="xml")
    with pytest.raises(SettingsError, match="AGORA_SLOW_STATEMENT_MS"):
        load_settings(slow_statement_ms=-1)
