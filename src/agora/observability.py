"""Request metrics, request ids, the access log and `GET /metrics`.

`install_observability(app, settings)` adds one pure-ASGI middleware and the `/metrics`
route. Per request the middleware

* takes the request id from `X-Request-ID` when it is acceptable (see `agora.logs`), else
  generates one; puts it in a context variable (so every log line of the request carries
  it) and in the `X-Request-ID` response header;
* counts the request by method, route *template* (`/users/{user_id}`, never the raw path,
  so the number of series stays bounded; unmatched requests share one label) and status,
  and observes its latency;
* writes one access-log line (`agora.access`).

`fastapi_telemetry(settings)` decides whether FastAPI's native OpenTelemetry runs at all
(`AGORA_OPENTELEMETRY`, see its docstring).

Metrics live in a registry of the application's own, so several applications can be built
in one process. With `PROMETHEUS_MULTIPROC_DIR` set (several worker processes), every
process writes its values to files in that directory and `/metrics` adds them up
(prometheus-client's multiprocess mode); see the README.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agora.config import Settings, Telemetry
from agora.db.monitoring import (
    LATENCY_BUCKETS,
    instrument,
    instrument_replicas,
    multiprocess_values,
)
from agora.db.session import Database
from agora.logs import new_request_id, request_id_var, valid_request_id

if TYPE_CHECKING:  # FastAPI's native telemetry (0.16x); older releases ignore the argument
    from fastapi.telemetry import TelemetryConfig

access_logger = logging.getLogger("agora.access")

UNMATCHED_ROUTE = "<unmatched>"
REQUEST_ID_HEADER = b"x-request-id"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Probes and scrapes arrive every few seconds: their access-log lines go out at DEBUG.
_QUIET_ROUTES = frozenset({"/metrics", "/health/live", "/health/ready"})


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry, *, multiprocess: bool) -> None:
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from request to the end of the response, by method and route template.",
            ["method", "route"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being handled.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # Requests being handled, counted by the middleware (on the event loop's thread) and
        # read when scraped; written to the gauge on every change only in multiprocess mode,
        # where a scrape reads files (the pool gauges do the same: agora.db.monitoring).
        self.in_flight = 0
        self.write_in_progress = multiprocess
        if not multiprocess:
            self.in_progress.set_function(lambda: self.in_flight)


class Observability:
    """The application's metric registry, HTTP metrics and database instrumentation."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # prometheus-client's own choice (from PROMETHEUS_MULTIPROC_DIR, when it was imported),
        # the one the pool gauges follow too.
        self.multiprocess = multiprocess_values()
        self.registry = CollectorRegistry(auto_describe=True)
        if not self.multiprocess:  # these read this process only: useless summed over workers
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.http = HttpMetrics(self.registry, multiprocess=self.multiprocess)

    @contextmanager
    def watching(self, db: Database, *, name: str = "primary") -> Iterator[None]:
        """Instrument `db`'s engines (primary, and replicas as `replica-N`) for as long as
        the block runs (the app's lifespan)."""
        engines = [(name, db.engine)]
        if db.replicas is not None:
            engines += [(replica.name, replica.engine) for replica in db.replicas.replicas]
        instrumentations = [
            instrument(
                engine,
                registry=self.registry,
                name=label,
                slow_statement_ms=self.settings.slow_statement_ms,
                log_parameters=self.settings.log_statement_parameters,
            )
            for label, engine in engines
        ]
        stop_replicas = None
        if db.replicas is not None:

            def set_on_read(callback: Callable[[str], None] | None) -> None:
                db.on_read = callback

            stop_replicas = instrument_replicas(
                db.replicas, registry=self.registry, on_read=set_on_read
            )
        try:
            yield
        finally:
            if stop_replicas is not None:
                stop_replicas()
            for instrumentation in instrumentations:
                instrumentation.remove()
            if self.multiprocess:
                # This worker's pool gauges ("livesum") must stop counting once it is gone.
                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class ObservabilityMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): one context variable, one `send` wrapper."""

    def __init__(self, app: ASGIApp, *, observability: Observability) -> None:
        self.app = app
        self.http = observability.http
        self.access_log = observability.settings.access_log
        # Labelled series by (method, route, status): `labels()` takes a lock and builds a
        # key on every call. Bounded like the series themselves (route templates, statuses).
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = valid_request_id(_header(scope, REQUEST_ID_HEADER)) or new_request_id()
        token = request_id_var.set(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, id_header]}
            await send(message)

        started = time.perf_counter()
        http = self.http
        http.in_flight += 1
        if http.write_in_progress:
            http.in_progress.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # No response yet: the server error handler answers 500. The request id stays
            # set (this task's context ends with the request) so its log line carries it.
            self._finish(scope, status or 500, started)
            raise
        finally:
            http.in_flight -= 1
            if http.write_in_progress:
                http.in_progress.dec()
        self._finish(scope, status or 500, started)
        request_id_var.reset(token)

    def _finish(self, scope: Scope, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
        route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
        series = self._series.get((method, route, status))
        if series is None:
            series = self._series[method, route, status] = (
                self.http.requests.labels(method, route, str(status)),
                self.http.duration.labels(method, route),
            )
        series[0].inc()
        series[1].observe(elapsed)
        if self.access_log:
            level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
            if access_logger.isEnabledFor(level):  # cached by the logger until reconfigured
                _access_line(level, method, scope["path"], route, status, elapsed)


def _access_line(
    level: int, method: str, path: str, route: str, status: int, elapsed: float
) -> None:
    """One access-log record, handled by `agora.access` like any other record (its filters,
    handlers, propagation), but built with `makeRecord` instead of `Logger.log`: that would
    first walk the stack for the caller's file and line (`findCaller`), which no access-log
    line shows, on every request."""
    duration_ms = round(elapsed * 1000, 1)
    record = access_logger.makeRecord(
        access_logger.name, level, __file__, 0,
        "%s %s %d %.1f ms", (method, path, status, duration_ms), None,
        extra={"method": method, "path": path, "route": route,
               "status": status, "duration_ms": duration_ms},
    )  # fmt: skip
    access_logger.handle(record)


# The OpenTelemetry API's stand-ins until an SDK sets a global provider (as FastAPI names them).
_UNSET_PROVIDERS = frozenset(
    {
        ("opentelemetry.trace", "ProxyTracerProvider"),
        ("opentelemetry.metrics._internal", "_ProxyMeterProvider"),
        ("opentelemetry._logs._internal", "ProxyLoggerProvider"),
    }
)


def fastapi_telemetry(settings: Settings) -> TelemetryConfig | None:
    """`FastAPI(telemetry=...)` for `AGORA_OPENTELEMETRY` (None: FastAPI's defaults).

    FastAPI (0.16x) asks on every request whether an OpenTelemetry SDK has set a global
    tracer, meter or logger provider, and without one learns each time that none has: three
    provider lookups and environment reads, 2-3% of the instructions of a one-query read
    (bench/README.md, "Seventh round"). `auto` asks once, when the app is built: FastAPI's
    telemetry stays on if an SDK is configured by then (`opentelemetry-instrument` sets the
    providers before the program starts; so do `OTEL_PYTHON_*_PROVIDER`) or if FastAPI is to
    configure one from the environment at startup (`FASTAPI_OTEL_AUTO_CONFIGURE=true`), and
    is off otherwise. `on` keeps FastAPI's check on every request (for an SDK set up after the
    app is built), `off` turns FastAPI's spans and metrics off.
    """
    mode = settings.opentelemetry
    if mode is Telemetry.on or (mode is Telemetry.auto and _opentelemetry_configured()):
        return None
    return {"tracing": False, "metrics": False, "logs": False}


def _opentelemetry_configured() -> bool:
    if os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true":
        return True
    try:
        from opentelemetry import _logs, metrics, trace
    except ImportError:  # an older FastAPI, without the API: nothing to configure
        return False
    providers = (
        trace.get_tracer_provider(),
        metrics.get_meter_provider(),
        _logs.get_logger_provider(),
    )
    # A provider of another class (an SDK's, a vendor's) counts as configured: when unsure,
    # FastAPI's default.
    return any((type(p).__module__, type(p).__name__) not in _UNSET_PROVIDERS for p in providers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def metrics(request: Request) -> Response:
    """Prometheus metrics of this service (all worker processes in multiprocess mode)."""
    observability: Observability = request.app.state.observability
    return Response(observability.render(), media_type=CONTENT_TYPE_LATEST)


def install_observability(app: FastAPI, settings: Settings) -> Observability:
    """Add the middleware and `GET /metrics` to `app`; the lifespan calls `watching(db)`."""
    observability = Observability(settings)
    app.state.observability = observability
    app.add_middleware(ObservabilityMiddleware, observability=observability)
    if settings.metrics_enabled:
        # A plain `def`: in multiprocess mode rendering reads files, off the event loop.
        app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    _add_request_id_to_server_errors(app)
    return observability


def _add_request_id_to_server_errors(app: FastAPI) -> None:
    """Starlette answers unhandled errors (500) outside every user middleware, so the
    middleware cannot add the header there: the 500 handler adds it instead."""
    handler: Any = app.exception_handlers.get(Exception)
    if handler is None:
        return

    async def with_request_id(request: Request, exc: Exception) -> Response:
        result = handler(request, exc)
        response: Response = await result if inspect.isawaitable(result) else result
        request_id = request_id_var.get()
        if request_id:
            response.headers["X-Request-ID"] = request_id
        return response

    app.exception_handlers[Exception] = with_request_id
