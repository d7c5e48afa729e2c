"""Every error status an operation can return, in its OpenAPI entry, with the error body.

The statuses that follow from how a route is built are added here, so a new route cannot
forget them: 422 (any parameter or body), 400 and 413 (a body: malformed, too large),
401 (a token is read), 503 (the database is used), 409 (a write: a named constraint or a
concurrent change can refuse it), 400 (a `cursor` parameter: tampered with). The domain
statuses (403, 404, 412, 428, 429 and the domain 409s) are declared on each route with
`errors(...)`. All of them share one body schema, `{"error", "detail"}` (agora.db.api).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from agora.db.api import ReadUoW, WriteUoW
from agora.members.deps import Bearer

DESCRIPTIONS = {
    400: "Malformed request: a body that is not JSON, a tampered cursor, a bad Idempotency-Key",
    401: "No token, or an invalid, expired or revoked one",
    403: "Not allowed for this member",
    404: "No such object (or not visible to the caller)",
    409: "Conflict with the current state (taken, out of stock, short of credits, a race)",
    412: "If-Match names another version",
    413: "Request body over AGORA_MAX_BODY_BYTES",
    422: "Invalid input",
    428: "If-Match required",
    429: "Too many attempts; see Retry-After",
    503: "The database is unavailable or timed out; see Retry-After",
}


class ErrorBody(BaseModel):
    """Every error response: the error's name and a human (or per-field) detail."""

    error: str = Field(examples=["UserNotFound"])
    detail: Any = Field(examples=["user 42 not found"])


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these error statuses, with the shared body schema."""
    return {code: {"model": ErrorBody, "description": DESCRIPTIONS[code]} for code in codes}


def _calls(dependant: Dependant) -> set[Any]:
    # A dependency that calls others directly (agora.members.deps: the caller, loaded in the
    # request's unit of work) names them in `uses`.
    found = {dependant.call, *getattr(dependant.call, "uses", ())}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def _dependency(alias: Any) -> Any:
    return get_args(alias)[1].dependency


_DATABASE = {_dependency(ReadUoW), _dependency(WriteUoW)}
_WRITE = _dependency(WriteUoW)
_TOKEN = _dependency(Bearer)


def _params(dependant: Dependant) -> list[str]:
    names = [p.name for p in dependant.query_params + dependant.path_params]
    names += [p.name for p in dependant.header_params + dependant.cookie_params]
    for sub in dependant.dependencies:
        names += _params(sub)
    return names


def implied_statuses(route: APIRoute) -> set[int]:
    """The error statuses that follow from the route's parameters and dependencies."""
    calls = _calls(route.dependant)
    params = _params(route.dependant)
    codes: set[int] = set()
    if params or route.body_field is not None:
        codes.add(422)
    if route.body_field is not None:
        codes |= {400, 413}
    if "cursor" in params:
        codes.add(400)
    if calls & _DATABASE:
        codes.add(503)
    if _WRITE in calls:
        codes.add(409)
    if _TOKEN in calls:
        codes.add(401)
    return codes


def _error_response(code: int) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    return {"description": DESCRIPTIONS[code], "content": {"application/json": {"schema": ref}}}


def api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """Every documented API route with its full path format (`/api/v1/users/{user_id}`)."""
    contexts = getattr(routing, "iter_route_contexts", None)  # FastAPI >= 0.16x includes lazily
    if contexts is None:
        for route in app.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                yield route.path_format, route
        return
    for context in contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema:
            yield context.path_format or route.path_format, route


def _add_implied_errors(app: FastAPI, spec: dict[str, Any]) -> None:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.pop("HTTPValidationError", None)  # our 422 body is an ErrorBody
    schemas.pop("ValidationError", None)
    for path, route in api_routes(app):
        operations = spec["paths"].get(path, {})
        for method in route.methods or ():
            responses = operations.get(method.lower(), {}).get("responses")
            if responses is None:
                continue
            for code in sorted(implied_statuses(route)):
                responses.setdefault(str(code), _error_response(code))
            if "422" in responses:  # FastAPI's default 422 body is not ours
                responses["422"]["content"] = _error_response(422)["content"]


def document_errors(app: FastAPI) -> None:
    """Make `app.openapi()` list the implied error statuses of every operation."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _add_implied_errors(app, generate())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
