"""Logging: JSON lines in production, readable text in development, a request id on each.

The request id lives in a context variable set by the HTTP middleware
(`agora.observability`); `RequestIdFilter`, attached to the handler, copies it onto every
record that handler emits, whichever logger (Agora's, SQLAlchemy's, uvicorn's) made it.

`logging_config(settings)` is a `logging.config.dictConfig` dictionary: `agora serve` hands
it to uvicorn, which applies it in every worker process before the application loads, so
uvicorn's own loggers and the application's share one format.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import math
import re
import secrets
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from agora.config import Environment, LogFormat, Settings

request_id_var: ContextVar[str | None] = ContextVar("agora_request_id", default=None)

# A request id from a client is used only if it is short and made of characters that are
# safe in a header and a log line; anything else is replaced by a generated id.
REQUEST_ID_MAX_LENGTH = 128
_SAFE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{REQUEST_ID_MAX_LENGTH}}}")


def new_request_id() -> str:
    # 128 random bits as 32 hex digits, like `uuid4().hex` without building a UUID.
    return secrets.token_hex(16)


def valid_request_id(value: str | None) -> str | None:
    """`value` if it is an acceptable request id, else None."""
    if value and _SAFE_REQUEST_ID.fullmatch(value):
        return value
    return None


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id`: the current request's id, or "-" outside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        return True


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "color_message", "taskName"}
)


@functools.lru_cache(maxsize=256)
def _extras(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The keys of a record's attributes that came from `extra=`, in their order. Records
    of one call site have the same attributes: this is worked out once per shape, not once
    per line (scanning some 25 attributes cost a fifth of an access-log line)."""
    return tuple(key for key in keys if key not in _STANDARD_ATTRS and not key.startswith("_"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, then extras."""

    # (whole second, its "YYYY-MM-DDTHH:MM:SS" in UTC): one line in a busy second pays for
    # the date formatting (`isoformat` costs about as much as the rest of the line).
    _second: tuple[int, str] = (-1, "")

    def _time(self, created: float) -> str:
        """`datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")`."""
        fraction, whole = math.modf(created)
        second, micros = int(whole), round(fraction * 1_000_000)  # as `fromtimestamp` rounds
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        elif micros < 0:  # before 1970: `modf` keeps the sign
            second, micros = second - 1, micros + 1_000_000
        cached = self._second
        if cached[0] != second:
            stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            cached = self._second = (second, stamp)  # one assignment: threads may share us
        return f"{cached[1]}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        attributes = vars(record)
        for key in _extras(tuple(attributes)):
            entry[key] = attributes[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


def uses_json(settings: Settings) -> bool:
    if settings.log_format is LogFormat.auto:
        return settings.env is Environment.production
    return settings.log_format is LogFormat.json


def logging_config(settings: Settings, *, stream: str = "ext://sys.stderr") -> dict[str, Any]:
    """A dictConfig for the service and uvicorn: one handler on the root logger."""
    formatter: dict[str, Any] = (
        {"()": "agora.logs.JsonFormatter"}
        if uses_json(settings)
        else {"format": TEXT_FORMAT, "datefmt": "%Y-%m-%d %H:%M:%S"}
    )
    # uvicorn's loggers lose their own handlers and propagate to the root handler.
    uvicorn = {"handlers": [], "propagate": True, "level": settings.log_level.value}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "agora.logs.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": stream,
            }
        },
        "root": {"handlers": ["default"], "level": settings.log_level.value},
        "loggers": {
            "uvicorn": dict(uvicorn),
            "uvicorn.error": dict(uvicorn),
            "uvicorn.access": dict(uvicorn),
        },
    }


def configure_logging(settings: Settings, *, stream: IO[str] | None = None) -> None:
    """Apply `logging_config(settings)` in this process (`stream`: default stderr)."""
    config = logging_config(settings)
    if stream is not None:
        config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
