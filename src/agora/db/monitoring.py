"""Prometheus metrics and a slow-statement log for a SQLAlchemy engine.

    instrumentation = instrument(engine, registry=registry, name="primary",
                                 slow_statement_ms=500)
    ...
    instrumentation.remove()          # detach every listener (e.g. at shutdown)

What is measured, per engine (label `pool`: "primary", "replica-1", ...):

* pool gauges: configured size, open connections, connections checked out, overflow
  connections in use, callers waiting for a connection; a histogram of the time spent
  acquiring a connection and a counter of acquisitions that gave up after `pool_timeout`;
* statements: a counter, a latency histogram, an error counter and a slow-statement counter.
  A statement slower than `slow_statement_ms` is logged (logger `agora.db.monitoring`) with
  its SQL; its parameters only when `log_parameters=True`, since they can hold personal data;
* with read replicas (`instrument_replicas`): read-only units of work per target and a
  health gauge per replica.

The pool gauges are counted from pool events (`connect`, `close`, `checkin`, `detach`,
`close_detached`, https://docs.sqlalchemy.org/en/20/core/events.html#connection-pool-events)
and from the acquisitions themselves (checkouts and waits: see `_wrap_pool`), in plain numbers
that a scrape reads (`Gauge.set_function`). Writing a gauge on every event would cost a lock
and a few hundred instructions each, four times per acquisition and return: ~2% of a
one-query request (bench/README.md, "Ninth round"). In prometheus-client's multiprocess
mode a scrape cannot read another process's numbers, so there every change is written
(`multiprocess_mode="livesum"`: the figure for the whole service is the sum over live workers).

This module knows nothing of any application; it works with any `Engine` or `AsyncEngine`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, values
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, QueuePool

from agora.db.prepared import observe_direct
from agora.db.replicas import Replica, ReplicaSet

logger = logging.getLogger("agora.db.monitoring")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
MAX_LOGGED_STATEMENT = 4000  # characters; keeps one log line bounded
_STARTED = "agora.monitoring.started"  # key in Connection.info: when the statement began


class DatabaseMetrics:
    """The metric families, registered once per registry (see `metrics_for`)."""

    def __init__(self, registry: CollectorRegistry, *, namespace: str = "db") -> None:
        label = ["pool"]

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(
                name, doc, label, namespace=namespace, registry=registry,
                multiprocess_mode="livesum",
            )  # fmt: skip

        self.size = gauge("pool_size", "Connections the pool keeps (configured pool_size).")
        self.connections = gauge("pool_connections", "Open connections owned by the pool.")
        self.checked_out = gauge("pool_checked_out", "Connections currently checked out.")
        self.overflow = gauge("pool_overflow", "Open connections beyond pool_size.")
        self.waiting = gauge("pool_waiting", "Callers waiting to acquire a connection.")
        self.wait_seconds = Histogram(
            "pool_checkout_wait_seconds",
            "Time spent acquiring a connection from the pool (including opening one).",
            label, namespace=namespace, registry=registry, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.timeouts = Counter(
            "pool_checkout_timeouts", "Acquisitions that gave up after pool_timeout.",
            label, namespace=namespace, registry=registry,
        )  # fmt: skip
        self.statements = Counter(
            "statements", "Statements executed.", label, namespace=namespace, registry=registry
        )
        self.statement_seconds = Histogram(
            "statement_duration_seconds", "Statement execution time.",
            label, namespace=namespace, registry=registry, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.statement_errors = Counter(
            "statement_errors", "Statements that raised an error.",
            label, namespace=namespace, registry=registry,
        )  # fmt: skip
        self.slow_statements = Counter(
            "slow_statements", "Statements slower than the slow-statement threshold.",
            label, namespace=namespace, registry=registry,
        )  # fmt: skip
        # Read replicas (agora.db.replicas): where read-only units of work ran, and whether
        # each replica is in rotation (in multiprocess mode: 1 only if every worker says so).
        self.reads = Counter(
            "reads", "Read-only units of work, by the server they ran on (pool label).",
            label, namespace=namespace, registry=registry,
        )  # fmt: skip
        self.replica_healthy = Gauge(
            "replica_healthy", "1 while the replica serves reads, 0 while it is skipped.",
            label, namespace=namespace, registry=registry, multiprocess_mode="livemin",
        )  # fmt: skip


_metrics_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, DatabaseMetrics] = (
    weakref.WeakKeyDictionary()
)
_metrics_lock = threading.Lock()


def metrics_for(registry: CollectorRegistry | None = None) -> DatabaseMetrics:
    """The `DatabaseMetrics` of `registry` (default: prometheus-client's global one),
    created on first use, so that several engines can share one registry."""
    registry = REGISTRY if registry is None else registry
    with _metrics_lock:
        metrics = _metrics_by_registry.get(registry)
        if metrics is None:
            metrics = _metrics_by_registry[registry] = DatabaseMetrics(registry)
        return metrics


def multiprocess_values() -> bool:
    """Whether prometheus-client keeps its values in per-process files (multiprocess mode,
    chosen from `PROMETHEUS_MULTIPROC_DIR` when it was imported): a scrape then reads the
    files, not this process's objects."""
    return values.ValueClass is not values.MutexValue


@dataclass
class Instrumentation:
    """Listeners attached to one engine by `instrument`; `remove()` detaches them."""

    engine: Engine
    name: str
    metrics: DatabaseMetrics
    slow_statement_ms: float | None
    log_parameters: bool
    _listeners: list[tuple[Any, str, Callable[..., Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connections: int = 0
    _checked_out: int = 0
    _waiting: int = 0
    _active: bool = True
    _unobserve: Callable[[], None] | None = None
    # Whether each change is written to the gauges (multiprocess mode) rather than read at
    # scrape time (see the module's docstring).
    _write_gauges: bool = field(init=False)

    def __post_init__(self) -> None:
        # The labelled series, looked up once: `labels()` costs a lock and a dict lookup,
        # and a one-query request changes several of these (pool checkout and checkin,
        # the statement).
        m, name = self.metrics, self.name
        self._write_gauges = multiprocess_values()
        self._size = m.size.labels(name)
        self._connections_gauge = m.connections.labels(name)
        self._checked_out_gauge = m.checked_out.labels(name)
        self._overflow = m.overflow.labels(name)
        self._waiting_gauge = m.waiting.labels(name)
        if not self._write_gauges:
            self._connections_gauge.set_function(lambda: self._connections)
            self._checked_out_gauge.set_function(lambda: self._checked_out)
            self._overflow.set_function(
                lambda: max(0, self._connections - _pool_size(self.engine.pool))
            )
            self._waiting_gauge.set_function(lambda: self._waiting)
        self._wait_seconds = m.wait_seconds.labels(name)
        self._timeouts = m.timeouts.labels(name)
        self._statements = m.statements.labels(name)
        self._statement_seconds = m.statement_seconds.labels(name)
        self._statement_errors = m.statement_errors.labels(name)
        self._slow_statements = m.slow_statements.labels(name)

    # -- pool -------------------------------------------------------------------------------

    def _pool_changed(self, *, connections: int = 0, checked_out: int = 0) -> None:
        with self._lock:
            self._connections += connections
            self._checked_out += checked_out
            if not self._write_gauges:
                return
            self._checked_out_gauge.set(self._checked_out)
            if connections or not checked_out:  # checkouts and checkins leave these alone
                size = _pool_size(self.engine.pool)
                self._connections_gauge.set(self._connections)
                self._overflow.set(max(0, self._connections - size))

    def _waiting_changed(self, delta: int) -> None:
        with self._lock:
            self._waiting += delta
            if self._write_gauges:
                self._waiting_gauge.set(self._waiting)

    def _wrap_pool(self, pool: Pool) -> None:
        """Time every acquisition and count the callers inside it.

        No pool event fires when a caller *starts* waiting: `checkout` (and `connect`, for a
        new connection) fire only once the connection has been obtained. The one call every
        acquisition goes through is `Pool.connect()` (`Engine.raw_connection()`, used by
        `Connection`, sessions and `execution_options()` views that share the pool), so it is
        wrapped on the pool instance. `Engine.dispose()` replaces the pool by
        `pool.recreate()`; events move to the new pool by themselves, and the wrapper of
        `recreate` below wraps the new pool too.

        A queue pool hands out a new checkout on every `connect()`, so the wrapper counts
        checkouts there too, instead of a `checkout` listener: with one, SQLAlchemy takes its
        slower checkout path on every acquisition (~1% of a one-query request). Other pools
        (`StaticPool`, `SingletonThreadPool`) may hand out the connection already checked
        out, which only the event tells apart: they keep the listener (`_attach`).
        """
        connect, recreate = pool.connect, pool.recreate
        counts_checkouts = isinstance(pool, QueuePool)

        def timed_connect() -> Any:
            if not self._active:
                return connect()
            self._waiting_changed(+1)
            started = time.perf_counter()
            try:
                connection = connect()
            except sa_exc.TimeoutError:
                self._timeouts.inc()
                raise
            finally:
                self._wait_seconds.observe(time.perf_counter() - started)
                self._waiting_changed(-1)
            if counts_checkouts:
                self._pool_changed(checked_out=+1)
            return connection

        def wrapping_recreate() -> Pool:
            new_pool = recreate()
            if self._active:
                self._wrap_pool(new_pool)
            return new_pool

        pool.connect = timed_connect  # type: ignore[method-assign]
        pool.recreate = wrapping_recreate  # type: ignore[method-assign]

    # -- statements -------------------------------------------------------------------------

    # One start time per connection is enough: a connection runs one cursor at a time.
    def _before_execute(self, conn: Any, *_args: Any) -> None:
        conn.info[_STARTED] = time.perf_counter()

    def _after_execute(
        self, conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any
    ) -> None:
        started = conn.info.pop(_STARTED, None)
        if started is not None:
            self._record(statement, parameters, time.perf_counter() - started)

    def _record(self, statement: str, parameters: Any, elapsed: float) -> None:
        self._statements.inc()
        self._statement_seconds.observe(elapsed)
        if self.slow_statement_ms is not None and elapsed * 1000 >= self.slow_statement_ms:
            self._slow_statements.inc()
            self._log_slow(statement, parameters, elapsed)

    def direct_statement(
        self, statement: str, parameters: Any, elapsed: float, error: BaseException | None
    ) -> None:
        """A statement `agora.db.prepared` ran without SQLAlchemy's events: the same figures
        as `_after_execute` (success) or `_on_error` (failure)."""
        if not self._active:
            return
        if error is not None:
            self._statement_errors.inc()
        else:
            self._record(statement, parameters, elapsed)

    def _on_error(self, context: Any) -> None:
        conn = context.connection
        if conn is not None:  # the statement never reached after_cursor_execute
            with contextlib.suppress(sa_exc.SQLAlchemyError):  # closed/invalidated: no info
                conn.info.pop(_STARTED, None)
        self._statement_errors.inc()

    def _log_slow(self, statement: str, parameters: Any, elapsed: float) -> None:
        sql = " ".join(statement.split())
        if len(sql) > MAX_LOGGED_STATEMENT:
            sql = sql[:MAX_LOGGED_STATEMENT] + " ..."
        shown = _short_repr(parameters) if self.log_parameters else "[hidden]"
        duration_ms = round(elapsed * 1000, 1)
        logger.warning(
            "slow statement (%.1f ms): %s  parameters: %s",
            duration_ms, sql, shown,
            extra={"statement": sql, "duration_ms": duration_ms, "parameters": shown,
                   "pool": self.name},
        )  # fmt: skip

    # -- lifecycle --------------------------------------------------------------------------

    def _listen(self, target: Any, name: str, fn: Callable[..., Any]) -> None:
        event.listen(target, name, fn)
        self._listeners.append((target, name, fn))

    def _attach(self) -> None:
        pool = self.engine.pool
        size = _pool_size(pool)
        if isinstance(pool, QueuePool):  # start from what the pool already holds
            self._checked_out = pool.checkedout()
            self._connections = pool.checkedin() + pool.checkedout()
        self._size.set(size)
        self._pool_changed()
        self._waiting_changed(0)
        self._listen(pool, "connect", lambda *_: self._pool_changed(connections=+1))
        self._listen(pool, "close", lambda *_: self._pool_changed(connections=-1))
        self._listen(pool, "close_detached", lambda *_: self._pool_changed(connections=-1))
        if not isinstance(pool, QueuePool):  # a queue pool's are counted in `_wrap_pool`
            self._listen(pool, "checkout", lambda *_: self._pool_changed(checked_out=+1))
        self._listen(pool, "checkin", lambda *_: self._pool_changed(checked_out=-1))
        self._listen(pool, "detach", lambda *_: self._pool_changed(checked_out=-1))
        self._wrap_pool(pool)
        self._listen(self.engine, "before_cursor_execute", self._before_execute)
        self._listen(self.engine, "after_cursor_execute", self._after_execute)
        self._listen(self.engine, "handle_error", self._on_error)
        # One listener for each statement event: `Prepared` may still read directly,
        # and reports to `direct_statement`.
        self._unobserve = observe_direct(self.engine, self)

    def remove(self) -> None:
        """Detach the listeners. Metric values stay in the registry."""
        if not self._active:
            return
        self._active = False
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None
        for target, name, fn in self._listeners:
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self._listeners.clear()


def instrument(
    engine: Engine | AsyncEngine,
    *,
    registry: CollectorRegistry | None = None,
    name: str = "default",
    slow_statement_ms: float | None = None,
    log_parameters: bool = False,
) -> Instrumentation:
    """Publish `engine`'s pool and statement metrics in `registry` under `pool=name`.

    `slow_statement_ms`: log statements that take at least this long (None: never; 0: all).
    `log_parameters`: include the bound parameters in that log (off: they may hold secrets).
    """
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    instrumentation = Instrumentation(
        engine=sync_engine,
        name=name,
        metrics=metrics_for(registry),
        slow_statement_ms=slow_statement_ms,
        log_parameters=log_parameters,
    )
    instrumentation._attach()
    return instrumentation


def instrument_replicas(
    replicas: ReplicaSet,
    *,
    registry: CollectorRegistry | None = None,
    on_read: Callable[[Callable[[str], None] | None], None],
) -> Callable[[], None]:
    """Publish where reads run and each replica's health; returns a function that stops it.

    `on_read(callback)` installs the per-read callback (e.g. `setattr(db, "on_read", ...)`).
    """
    metrics = metrics_for(registry)

    def health_changed(replica: Replica) -> None:
        metrics.replica_healthy.labels(replica.name).set(1 if replica.healthy else 0)

    for replica in replicas.replicas:
        health_changed(replica)
    remove_listener = replicas.on_change(health_changed)
    on_read(lambda target: metrics.reads.labels(target).inc())

    def remove() -> None:
        remove_listener()
        on_read(None)

    return remove


def _pool_size(pool: Pool) -> int:
    return pool.size() if isinstance(pool, QueuePool) else 0


def _short_repr(parameters: Any, limit: int = 1000) -> str:
    text = repr(parameters)
    return text if len(text) <= limit else text[:limit] + " ..."
