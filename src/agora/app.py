"""`create_app(settings)`: the FastAPI application and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Scope

from agora import __version__
from agora.bodylimit import install_body_limit
from agora.config import Environment, Settings, load_settings
from agora.credits.router import router as credits_router
from agora.db.api import error_response, install_error_handlers, install_units_of_work
from agora.db.engine import make_engine
from agora.db.pagination import PaginationConfig
from agora.db.readyourwrites import PositionSigner, ReadYourWritesMiddleware
from agora.db.replicas import ReplicaSet
from agora.db.session import Database
from agora.forum.router import routers as forum_routers
from agora.gctuning import tuned_gc
from agora.market.router import routers as market_routers
from agora.members.deps import Members
from agora.members.router import routers as members_routers
from agora.observability import fastapi_telemetry, install_observability
from agora.openapi import document_errors, errors
from agora.routing import PrefixRouter
from agora.web.admin import install_admin
from agora.web.docs import install_docs
from agora.web.landing import router as landing_router


def make_database(settings: Settings) -> Database:
    """The primary's engine and, with `AGORA_DATABASE_REPLICA_URLS`, one engine per replica
    (same pool settings each: see the connection budget in docs/deploy.md)."""

    def engine(url: str, application_name: str) -> AsyncEngine:
        return make_engine(
            url,
            echo=settings.echo_sql,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            pool_recycle=settings.pool_recycle,
            pool_pre_ping=settings.pool_pre_ping,
            statement_timeout_ms=settings.statement_timeout_ms,
            lock_timeout_ms=settings.lock_timeout_ms,
            idle_in_transaction_timeout_ms=settings.idle_in_transaction_timeout_ms,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            connect_timeout=settings.connect_timeout,
            application_name=application_name,
            pgbouncer=settings.database_pgbouncer,
        )

    replicas = None
    if settings.database_replica_urls:
        replicas = ReplicaSet(
            [engine(url, "agora-replica") for url in settings.database_replica_urls],
            poll_interval=settings.replica_poll_interval,
            probe_timeout=settings.health_timeout,
        )
    return Database(engine(settings.database_url, "agora"), replicas=replicas)


def _primary_position(scope: Scope) -> Callable[[], Awaitable[int]] | None:
    """For read-your-writes: how to read the primary's WAL position (None: no replicas)."""
    db: Database | None = getattr(scope["app"].state, "db", None)
    return None if db is None or db.replicas is None else db.primary_position


health = PrefixRouter(prefix="/health", tags=["health"])


@health.get("/live")
async def live() -> dict[str, str]:
    """Liveness: the process answers. Touches no database."""
    return {"status": "ok"}


@health.get("/ready", responses=errors(503))
async def ready(request: Request) -> Any:
    """Readiness: the database answers `SELECT 1` within the health timeout (replicas are
    listed, not required: reads fall back to the primary)."""
    db: Database = request.app.state.db
    settings: Settings = request.app.state.settings
    try:
        await db.ping(timeout=settings.health_timeout)
    except TimeoutError:
        return error_response(
            503, "DatabaseUnavailable", "database ping timed out", {"Retry-After": "1"}
        )
    except Exception as exc:  # any failure to reach the database means "not ready"
        reason = type(exc).__name__
        return error_response(
            503, "DatabaseUnavailable", f"database unreachable ({reason})", {"Retry-After": "1"}
        )
    body: dict[str, Any] = {"status": "ok", "database": db.engine.dialect.name}
    if db.replicas is not None:  # informative: reads fall back to the primary without them
        body["replicas"] = {r.name: "ok" if r.healthy else "skipped" for r in db.replicas.replicas}
    return body


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    """Build the application. With no settings, read them from the environment.

    The lifespan creates the engine at startup and disposes of it at shutdown. A `database`
    passed in (tests, embedding) is used as is and left to its owner to dispose of.
    """
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if database is None:
                app.state.db = make_database(settings)
                await app.state.db.start()  # first replica probe, then in the background
            try:
                with (
                    observability.watching(app.state.db),  # pool and statement metrics
                    tuned_gc(freeze=settings.gc_freeze, threshold=settings.gc_threshold),
                ):
                    yield
            finally:
                if database is None:
                    await app.state.db.dispose()
        finally:
            await app.state.members.aclose()  # Redis connections of the login limiter

    app = FastAPI(
        title="Agora",
        version=__version__,
        description="Community marketplace: members, forum, market and credits.",
        lifespan=lifespan,
        docs_url=None,  # served by agora.web.docs, with local assets instead of a CDN's
        redoc_url=None,
        telemetry=fastapi_telemetry(settings),  # FastAPI's OpenTelemetry: AGORA_OPENTELEMETRY
    )
    app.state.settings = settings
    app.state.pagination = PaginationConfig(
        secret=settings.secret_key.get_secret_value(),
        default_limit=settings.page_default_limit,
        max_limit=settings.page_max_limit,
        max_offset=settings.page_max_offset,
    )
    if database is not None:
        app.state.db = database
    app.state.members = Members.from_settings(settings)  # password hasher, tokens, limiter
    install_error_handlers(app)
    install_units_of_work(app)  # innermost: units close just before the response starts
    # Read-your-writes only matters with replicas; without them it would be one more layer
    # for every request to pass through (~1% of a one-query read; bench/README.md).
    if settings.database_replica_urls if database is None else database.replicas is not None:
        app.add_middleware(
            ReadYourWritesMiddleware,
            signer=PositionSigner(
                settings.secret_key.get_secret_value(), max_age=settings.read_your_writes_seconds
            ),
            position_source=_primary_position,
            secure_cookie=settings.env is Environment.production,
        )
    install_body_limit(app, max_bytes=settings.max_body_bytes)
    observability = install_observability(app, settings)  # after the error handlers
    app.include_router(health)
    for router in (*members_routers, *market_routers, credits_router, *forum_routers):
        app.include_router(router, prefix="/api/v1")
    app.include_router(landing_router)
    document_errors(app)  # every error status in the OpenAPI, with the error body
    install_docs(app)
    install_admin(app, settings, app.state.members)
    return app
