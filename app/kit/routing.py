"""Routers that decline, in one set lookup, a request none of their routes can match.

FastAPI keeps each included router as a subtree and matches a request by trying
every route of every subtree in turn, each try with its own bookkeeping; a route
declared late was found only after ~50 failed tries, which cost more than the
whole gateway. A `DomainRouter` knows the first path segment of each of its
routes (under the prefix it is included with) and answers "no match" at once for
any other, so a request walks only the router it belongs to.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.routing import _get_scope_included_router
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope

# A route whose path starts with a parameter (`/{name}`) can match any first segment.
_ANY = "*"


def _first_segment(path: str) -> str:
    """The first segment of a route path, or `_ANY` if it is (or starts with) a parameter."""
    head = path.lstrip("/").split("/", 1)[0]
    return _ANY if "{" in head else head


def _route_paths(router: APIRouter, prefix: str = "") -> list[str]:
    """The paths of every route of `router`, included routers' ones under their prefixes."""
    paths = []
    for route in router.routes:
        nested = getattr(route, "original_router", None)
        if isinstance(nested, APIRouter):
            paths += _route_paths(nested, prefix + route.include_context.prefix)
        elif isinstance(getattr(route, "path", None), str):
            paths.append(prefix + route.path)
    return paths


class DomainRouter(APIRouter):
    """An `APIRouter` that skips its routes for paths outside its first segments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heads: frozenset[str] | None = None
        self._heads_version = -1

    def first_segments(self) -> frozenset[str]:
        version = self._get_routes_version()
        if self._heads is None or version != self._heads_version:
            self._heads = frozenset(_first_segment(path) for path in _route_paths(self))
            self._heads_version = version
        return self._heads

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        included = _get_scope_included_router(scope)
        if included is not None and included.original_router is self:
            heads = self.first_segments()
            if _ANY not in heads:
                prefix = included.include_context.prefix
                path = get_route_path(scope)
                rest = path[len(prefix) :]
                if not path.startswith(prefix) or _first_segment(rest) not in heads:
                    return Match.NONE, {}
        return super().matches(scope)
