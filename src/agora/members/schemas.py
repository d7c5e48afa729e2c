"""Members' request and response bodies.

Inputs forbid unknown fields (a caller cannot mass-assign `id` or `credits`), reject NUL
characters (PostgreSQL cannot store them) and bound every string. Outputs come in two views:
`UserPublic` for anyone, `UserPrivate` for the user themself and superusers. No schema holds
the password hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    EmailStr,
    Field,
    HttpUrl,
    StringConstraints,
    TypeAdapter,
)

from agora.members.security import PASSWORD_MAX, PASSWORD_MIN
from agora.models.user import (
    AVATAR_URL_MAX,
    BIO_MAX,
    EMAIL_MAX,
    FULL_NAME_MAX,
    LOCATION_MAX,
    USERNAME_MAX,
    USERNAME_MIN,
    UserStatus,
)
from agora.money import Amount, AmountOut
from agora.schemas import Input, NoNul, Output, PartialUpdate

_EMAIL: TypeAdapter[EmailStr] = TypeAdapter(EmailStr)


def _email(value: str) -> str:
    return str(_EMAIL.validate_python(value))


def _lower(value: str) -> str:
    return value.lower()


_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _http_url(value: str) -> str:
    text = str(_HTTP_URL.validate_python(value))  # http(s) only, normalized
    if len(text) > AVATAR_URL_MAX:
        raise ValueError(f"must be at most {AVATAR_URL_MAX} characters")
    return text


def _lower_text(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


Username = Annotated[
    str,
    StringConstraints(min_length=USERNAME_MIN, max_length=USERNAME_MAX, pattern=r"^[a-z0-9_]+$"),
    BeforeValidator(_lower_text),  # runs first: "Ada" is "ada"
]
# Length first (cheap), then EmailStr (which also refuses NUL and control characters).
Email = Annotated[
    str, StringConstraints(max_length=EMAIL_MAX), AfterValidator(_email), AfterValidator(_lower)
]
FullName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=FULL_NAME_MAX), NoNul]
Password = Annotated[
    str, StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX), NoNul
]
AnyPassword = Annotated[str, StringConstraints(max_length=PASSWORD_MAX), NoNul]
Bio = Annotated[str, StringConstraints(max_length=BIO_MAX), NoNul]
Location = Annotated[str, StringConstraints(strip_whitespace=True, max_length=LOCATION_MAX), NoNul]
AvatarUrl = Annotated[
    str, StringConstraints(max_length=AVATAR_URL_MAX), NoNul, AfterValidator(_http_url)
]


class UserCreate(Input):
    email: Email
    username: Username
    password: Password
    full_name: FullName = ""


class UserUpdate(PartialUpdate):
    """Every field optional; only the fields sent change. The last three: superusers only."""

    email: Email | None = None
    username: Username | None = None
    full_name: FullName | None = None
    password: Password | None = None
    current_password: AnyPassword | None = None
    status: UserStatus | None = None
    is_superuser: bool | None = None
    credits: Annotated[Amount, Field(ge=0)] | None = None


PRIVILEGED_FIELDS = frozenset({"status", "is_superuser", "credits"})


class ProfileUpdate(Input):
    """The whole profile: a field left out is cleared."""

    bio: Bio | None = None
    avatar_url: AvatarUrl | None = None
    location: Location | None = None


class ProfileRead(Output):
    bio: str | None
    avatar_url: str | None
    location: str | None
    updated_at: datetime


class _UserView(Output):
    id: int
    username: str
    full_name: str
    created_at: datetime
    profile: ProfileRead | None


class UserPublic(_UserView):
    """What anyone may see."""


class UserPrivate(_UserView):
    """What the user themself and superusers see. Siblings, not subclasses, so a response
    typed `UserPrivate | UserPublic` serializes each exactly as built."""

    email: str
    status: UserStatus
    credits: AmountOut
    is_superuser: bool


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - not a secret
    expires_in: int


# The columns `UserRepository.get_view` reads: everything `UserPrivate` shows, and the profile.
VIEW_COLUMNS = ("id", "username", "full_name", "created_at", "email", "status", "credits",
                "is_superuser")  # fmt: skip
PROFILE_COLUMNS = ("id", "bio", "avatar_url", "location", "updated_at")


# Which row keys fill which fields, worked out once rather than on every request.
_PROFILE_KEYS = tuple((name, f"profile_{name}") for name in PROFILE_COLUMNS)
_VIEW_FIELDS = {
    model: tuple(name for name in model.model_fields if name != "profile")
    for model in (UserPrivate, UserPublic)
}


def user_view_json(row: Mapping[Any, Any], *, private: bool) -> bytes:
    """The JSON of `UserPrivate` (or `UserPublic`) for a row of `UserRepository.get_view`,
    validated and serialized once (the endpoint returns the bytes, so FastAPI does not
    validate and serialize the response model again)."""
    profile = None
    if row["profile_id"] is not None:
        profile = {name: row[key] for name, key in _PROFILE_KEYS}
    model = UserPrivate if private else UserPublic
    fields = {name: row[name] for name in _VIEW_FIELDS[model]}
    fields["profile"] = profile
    view = model.model_validate(fields)
    return model.__pydantic_serializer__.to_json(view)
