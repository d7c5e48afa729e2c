"""Members' domain errors. Each renders as `{"error": "<ClassName>", "detail": ...}`."""

from __future__ import annotations

from agora.db.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthorized,
    on_constraint,
)

# RFC 6750 §3: a 401 for a bearer-protected resource names the scheme.
_BEARER = {"WWW-Authenticate": "Bearer"}
_BEARER_INVALID = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class EmailTaken(Conflict):
    default_detail = "This email address is already registered"


class UsernameTaken(Conflict):
    default_detail = "This username is already taken"


class UserNotFound(NotFound):
    default_detail = "No such user"


class ProfileNotFound(NotFound):
    default_detail = "This user has no profile"


class NotAuthenticated(Unauthorized):
    default_detail = "Not authenticated"
    headers = _BEARER


class InvalidToken(Unauthorized):
    default_detail = "The access token is invalid or has expired"
    headers = _BEARER_INVALID


class InvalidCredentials(Unauthorized):
    default_detail = "Incorrect username or password"
    headers = _BEARER


class AccountDisabled(Forbidden):
    default_detail = "This account is not active"


class NotAllowed(Forbidden):
    default_detail = "You may only change your own account"


class PrivilegedField(Invalid):
    """422, as for any other field a caller may not send (issue 10: privileged fields get 422
    and nothing changes); a superuser may send them."""

    default_detail = "Only a superuser may set status, is_superuser or credits"


class PrivilegedFilter(Forbidden):
    default_detail = "Only a superuser may filter users by status"


class WrongPassword(Forbidden):
    default_detail = "The current password is not correct"


class CurrentPasswordRequired(Invalid):
    default_detail = "Changing your password requires current_password"


class TooManyLoginAttempts(TooManyRequests):
    default_detail = "Too many login attempts; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__(headers={"Retry-After": str(retry_after)})


# A sign-up racing past the pre-check is refused by the unique constraint: still a 409.
on_constraint("uq_user_email", EmailTaken)
on_constraint("uq_user_username", UsernameTaken)
