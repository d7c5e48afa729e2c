"""FastAPI glue for `agora.db`: unit-of-work dependencies and one error format.

Every error leaves as `{"error": "<Name>", "detail": ...}` with the right status:
`AppError`s, request validation errors, Starlette HTTP errors, database errors (translated by
`agora.db.errors.translate`) and unexpected exceptions (a bare 500, no traceback to the client).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agora.db.errors import AppError, translate
from agora.db.session import Database
from agora.db.uow import UnitOfWork

logger = logging.getLogger("agora.errors")


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


_OPEN_UNITS = "agora.units_of_work"
_READ_UNIT = "agora.read_unit"  # the request's units, one of each kind at most
_WRITE_UNIT = "agora.write_unit"


class UnitsOfWorkMiddleware:
    """Closes the units of work a request's dependencies opened, before its response starts.

    `ReadUoW` and `WriteUoW` (or `read_unit(request)` and `write_unit(request)` called from
    a dependency) open a unit of work on first use and register it here. When the response
    starts (the endpoint and any error handler are done), every unit is closed -- uncommitted
    work rolled back, connections returned to the pool -- and only then is the status line
    sent, so no response leaves while its transaction is open. A request that ends without a
    response (an exception to the server's 500 handler, a client gone) is cleaned up on the
    way out.

    Why not a `yield` dependency: FastAPI wraps each one in an async context manager, an
    exit stack and a shielded cancel scope, which cost more per request than the unit of work
    itself on a one-query read (see bench/README.md, "Profiling and fixes").
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        units: list[UnitOfWork] = []
        scope[_OPEN_UNITS] = units

        async def send_after_closing(message: Message) -> None:
            if units and message["type"] == "http.response.start":
                await _close(units)
            await send(message)

        try:
            await self.app(scope, receive, send_after_closing)
        finally:
            if units:
                await _close(units)


def install_units_of_work(app: FastAPI) -> None:
    """Enable `ReadUoW` and `WriteUoW` in `app` (adds `UnitsOfWorkMiddleware`)."""
    app.add_middleware(UnitsOfWorkMiddleware)


async def _close(units: list[UnitOfWork]) -> None:
    # Each unit is closed even when another one's close fails: whatever it had to say was
    # said (committed or not) before the response started; a close that fails on a broken
    # connection leaves that connection invalidated by SQLAlchemy, not back in the pool.
    while units:
        try:
            await units.pop().__aexit__(None, None, None)
        except Exception:
            logger.warning("closing a unit of work failed", exc_info=True)


async def _unit(request: Request, *, read_only: bool) -> UnitOfWork:
    key = _READ_UNIT if read_only else _WRITE_UNIT
    opened: UnitOfWork | None = request.scope.get(key)
    if opened is not None:
        return opened
    units: list[UnitOfWork] | None = request.scope.get(_OPEN_UNITS)
    if units is None:
        raise RuntimeError(
            "ReadUoW and WriteUoW need UnitsOfWorkMiddleware: call install_units_of_work(app)"
        )
    uow = await get_database(request).uow(read_only=read_only).__aenter__()
    units.append(uow)
    request.scope[key] = uow
    return uow


async def write_unit(request: Request) -> UnitOfWork:
    """The request's unit of work for writes (what `WriteUoW` gives), opened on first use.

    A request has at most one of each kind, opened by whichever asks first. Call this from a
    dependency that needs the unit together with other work (say, checking a token and
    loading its user) instead of declaring a `WriteUoW` parameter: FastAPI solves every
    dependency of a route on every request, a cached one too, at ~6% of a one-query read's
    cost each (bench/README.md, "Eighth round"). The endpoint's own `WriteUoW` is this unit.
    """
    return await _unit(request, read_only=False)


async def read_unit(request: Request) -> UnitOfWork:
    """The request's read-only unit of work (what `ReadUoW` gives), opened on first use;
    see `write_unit`."""
    return await _unit(request, read_only=True)


# Nothing commits here: services commit inside the endpoint, so a failed commit is an error
# response, never a 2xx. The unit is closed before the response starts (see above).
WriteUoW = Annotated[UnitOfWork, Depends(write_unit)]
ReadUoW = Annotated[UnitOfWork, Depends(read_unit)]


class ErrorResponse(JSONResponse):
    """JSON rendered with orjson (FastAPI's ORJSONResponse is deprecated)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(
    status_code: int, name: str, detail: Any, headers: dict[str, str] | None = None
) -> ErrorResponse:
    return ErrorResponse(
        {"error": name, "detail": jsonable_encoder(detail)},
        status_code=status_code,
        headers=headers,
    )


async def _app_error(_request: Request, exc: Exception) -> ErrorResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.name, exc.detail, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> ErrorResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg"), "type": err.get("type")}
        for err in exc.errors()
    ]
    return error_response(422, "ValidationError", detail)


async def _http_error(_request: Request, exc: Exception) -> ErrorResponse:
    assert isinstance(exc, StarletteHTTPException)
    name = HTTPStatus(exc.status_code).phrase.replace(" ", "").replace("-", "")
    return error_response(exc.status_code, name, exc.detail, getattr(exc, "headers", None))


async def _database_error(request: Request, exc: Exception) -> ErrorResponse:
    typed = translate(exc)
    if typed is None:
        return await _unexpected_error(request, exc)
    if typed.status_code >= 500:
        logger.warning("database error on %s %s: %s", request.method, request.url.path, exc)
    return error_response(typed.status_code, typed.name, typed.detail, typed.headers)


async def _unexpected_error(request: Request, exc: Exception) -> ErrorResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "InternalError", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for exc_type in (
        sa_exc.DBAPIError,
        sa_exc.TimeoutError,
        orm_exc.StaleDataError,
        ConnectionError,
        OSError,
        TimeoutError,
    ):
        app.add_exception_handler(exc_type, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)
