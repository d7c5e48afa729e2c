"""`PrefixRouter`: an `APIRouter` that a request outside its prefix skips at once.

FastAPI (0.16x) routes a request by asking each included router, in order, whether one of
its routes matches, and a router answers by trying every route it holds: a request pays for
every route of every router included before its own (about as much per route as a small
dependency; bench/README.md, "Fourth round"). A router with a literal prefix ("/users") can
hold none of the routes of a path that does not contain that prefix, so it says "no match"
before trying them. Nothing else changes: matching within the router, the order of routers,
405s and slash redirects are FastAPI's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope


class PrefixRouter(APIRouter):
    """An `APIRouter` whose routes are only tried for paths that contain its `prefix`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A prefix with a path parameter ("/users/{id}") is not literal text of the path.
        self._literal_prefix = self.prefix if "{" not in self.prefix else ""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # Containment, not `startswith`: the path may carry an include prefix ("/api/v1")
        # or a root path before this router's own prefix.
        if self._literal_prefix and self._literal_prefix not in scope.get("path", ""):
            return Match.NONE, {}
        return super().matches(scope)
