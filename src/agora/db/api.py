"""FastAPI glue for `agora.db`: unit-of-work dependencies and one error format.

Every error leaves as `{"error": "<Name>", "detail": ...}` with the right status:
`AppError`s, request validation errors, Starlette HTTP errors, database errors (translated by
`agora.db.errors.translate`) and unexpected exceptions (a bare 500, no traceback to the client).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
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

from agora.db.errors import AppError, translate
from agora.db.session import Database
from agora.db.uow import UnitOfWork

logger = logging.getLogger("agora.errors")


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _write_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    async with get_database(request).uow() as uow:
        yield uow


async def _read_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    async with get_database(request).uow(read_only=True) as uow:
        yield uow


# scope="function": the session is closed (and its connection returned to the pool) as soon
# as the endpoint returns, before the response is serialized and sent. Nothing commits here:
# services commit inside the endpoint, so a failed commit is an error response, never a 2xx.
WriteUoW = Annotated[UnitOfWork, Depends(_write_uow, scope="function")]
ReadUoW = Annotated[UnitOfWork, Depends(_read_uow, scope="function")]


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
