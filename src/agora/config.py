"""Application settings: one `Settings` class, read from `AGORA_*` variables and `.env`."""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from agora.db.engine import normalize_url

DEFAULT_SECRET_KEY = "change-me-in-production"  # noqa: S105 - refused outside development
# OWASP's Argon2id minimum (m=19 MiB, t=2, p=1), see
# https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#argon2id
OWASP_ARGON2_MEMORY_KIB, OWASP_ARGON2_TIME_COST = 19_456, 2


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class LogFormat(StrEnum):
    auto = "auto"  # json in production, text elsewhere
    text = "text"
    json = "json"


class Telemetry(StrEnum):
    auto = "auto"  # on when an OpenTelemetry SDK is configured as the app is built
    on = "on"
    off = "off"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Settings(BaseSettings):
    """Every knob of the service. See `.env.example` for the documented list."""

    model_config = SettingsConfigDict(
        env_prefix="AGORA_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    env: Environment = Environment.development
    database_url: str = "sqlite+aiosqlite:///./agora.db"
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    echo_sql: bool = False

    pool_size: int = Field(default=10, ge=1, le=1000)
    max_overflow: int = Field(default=10, ge=0, le=1000)
    pool_timeout: float = Field(default=5.0, gt=0, le=600)
    pool_recycle: int = Field(default=1800, ge=-1)
    pool_pre_ping: bool = False  # a round trip per checkout; see README
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    lock_timeout_ms: int = Field(default=10_000, ge=0)  # 0: wait up to statement_timeout
    idle_in_transaction_timeout_ms: int = Field(default=60_000, ge=0)
    sqlite_busy_timeout_ms: int = Field(default=5_000, ge=0)
    health_timeout: float = Field(default=2.0, gt=0, le=60)

    # Request bodies past this are refused with 413 (agora.bodylimit); 1 MiB by default.
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1_073_741_824)

    page_default_limit: int = Field(default=20, ge=1)
    page_max_limit: int = Field(default=100, ge=1)
    page_max_offset: int = Field(default=10_000, ge=0)

    # --- operations: metrics, logs, database outages (issue 7) ---
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.auto
    access_log: bool = True
    slow_statement_ms: int = Field(default=500, ge=0)
    log_statement_parameters: bool = False
    metrics_enabled: bool = True
    # FastAPI's own OpenTelemetry spans and metrics (agora.observability.fastapi_telemetry).
    opentelemetry: Telemetry = Telemetry.auto
    # Garbage collector of the server process (agora.gctuning): freeze the startup heap,
    # and the young-generation threshold (0 = Python's default of 700).
    gc_freeze: bool = True
    gc_threshold: int = Field(default=10_000, ge=0, le=10_000_000)
    connect_timeout: float = Field(default=5.0, gt=0, le=600)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", "opentelemetry", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    access_token_expire_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    password_hash_memory_kib: int = Field(default=OWASP_ARGON2_MEMORY_KIB, ge=8, le=1_048_576)
    password_hash_time_cost: int = Field(default=OWASP_ARGON2_TIME_COST, ge=1, le=50)
    password_hash_parallelism: int = Field(default=1, ge=1, le=16)
    # Rate limits in `limits` notation ("10/15 minutes", "5/minute;50/hour").
    login_limit_per_account: str = "10/15 minutes"
    login_limit_per_address: str = "100/15 minutes"
    # Shared storage for rate limits (redis:// or rediss://); in-process memory when unset.
    redis_url: SecretStr | None = None

    # --- scale out: read replicas, PgBouncer (issue 11; see docs/deploy.md) ---
    # Comma-separated PostgreSQL URLs of streaming replicas of `database_url`.
    database_replica_urls: Annotated[tuple[str, ...], NoDecode] = ()
    replica_poll_interval: float = Field(default=1.0, gt=0, le=60)
    read_your_writes_seconds: int = Field(default=30, ge=1, le=3600)
    # Behind PgBouncer in transaction pooling mode: no prepared-statement cache, unique
    # statement names, no statement_timeout in the startup packet.
    database_pgbouncer: bool = False

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        try:
            return normalize_url(value).render_as_string(hide_password=False)
        except ValueError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _split_replica_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("database_replica_urls")
    @classmethod
    def _normalize_replica_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        urls = []
        for url in value:
            try:
                parsed = normalize_url(url)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            if parsed.get_backend_name() != "postgresql":
                raise ValueError("read replicas must be postgresql:// URLs")
            urls.append(parsed.render_as_string(hide_password=False))
        return tuple(urls)

    @field_validator("login_limit_per_account", "login_limit_per_address")
    @classmethod
    def _valid_rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit; write e.g. '10/15 minutes' or '5/minute;50/hour'"
            ) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://")):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env is Environment.production:
            key = self.secret_key.get_secret_value()
            if key == DEFAULT_SECRET_KEY or len(key) < 32:
                raise ValueError(
                    "AGORA_SECRET_KEY must be set to a random value of at least 32 characters "
                    "in production (e.g. the output of "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
                )
            if (
                self.password_hash_memory_kib < OWASP_ARGON2_MEMORY_KIB
                or self.password_hash_time_cost < OWASP_ARGON2_TIME_COST
            ):
                raise ValueError(
                    "AGORA_PASSWORD_HASH_MEMORY_KIB / AGORA_PASSWORD_HASH_TIME_COST must not be "
                    f"below OWASP's minimum ({OWASP_ARGON2_MEMORY_KIB} KiB, "
                    f"{OWASP_ARGON2_TIME_COST} passes) in production"
                )
        if self.database_replica_urls and self.is_sqlite:
            raise ValueError(
                "AGORA_DATABASE_REPLICA_URLS needs a PostgreSQL AGORA_DATABASE_URL: SQLite has "
                "no replicas (unset AGORA_DATABASE_REPLICA_URLS, or use PostgreSQL)"
            )
        if self.page_default_limit > self.page_max_limit:
            raise ValueError("AGORA_PAGE_DEFAULT_LIMIT must not exceed AGORA_PAGE_MAX_LIMIT")
        return self

    @cached_property
    def url(self) -> URL:
        return make_url(self.database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def masked_database_url(self) -> str:
        return self.url.render_as_string(hide_password=True)


class SettingsError(Exception):
    """Raised with a one-line, human message when settings do not validate."""


def describe_validation_error(exc: ValidationError) -> str:
    """Turn pydantic's report into `AGORA_X: message` lines naming the variable."""
    lines = []
    for err in exc.errors():
        loc = "_".join(str(p) for p in err["loc"]).upper()
        name = f"AGORA_{loc}" if loc else "settings"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build `Settings`, raising `SettingsError` with a readable message on bad input."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
