"""Routers that decline, in one set lookup, a request none of their routes can match.

FastAPI keeps each included router as a subtree and matches a request by trying
every route of every subtree in turn, each try with its own bookkeeping; a route
declared late was found only after ~50 failed tries, which cost more than the
whole gateway. A `DomainRouter` knows the first path segment of each of its
routes (under the prefix it is included with) and answers "no match" at once for
any other, so a request walks only the router it belongs to.

It also keeps the OpenAPI document readable for the clients generated from it:
`operation_id` names every operation `domain-action` (`auth-register`), a route
without a `summary=` gets the first sentence of its docstring rather than its
function name, and a 204 route sends no body type.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from fastapi import APIRouter, status
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import _get_scope_included_router
from starlette._utils import get_route_path
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

# A route whose path starts with a parameter (`/{name}`) can match any first segment.
_ANY = "*"


def _first_segment(path: str) -> str:
    """The first segment of a route path, or `_ANY` if it is (or starts with) a parameter."""
    head = path.lstrip("/").split("/", 1)[0]
    return _ANY if "{" in head else head


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def operation_id(route: Any) -> str:
    """`domain-action`: the route's first tag (else its first path segment under /api/v1)
    and its name, kebab-cased; a name that starts with the domain does not repeat it
    (`quota_status` under `quota` → `quota-status`).

    FastAPI's `generate_unique_id_function`, declared once on the app.
    """
    if route.tags:
        domain = _slug(str(route.tags[0]))
    else:
        segments = [s for s in route.path_format.split("/") if s and "{" not in s]
        if segments[:2] == ["api", "v1"]:
            segments = segments[2:]
        domain = _slug(segments[0]) if segments else "root"
    action = _slug(route.name)
    if action.startswith(domain + "-"):
        action = action[len(domain) + 1 :]
    return f"{domain}-{action}" if action and action != domain else domain


def docstring_summary(endpoint: Any) -> str | None:
    """The first sentence of an endpoint's docstring (up to a `.` or `;`), if it has one."""
    doc = inspect.getdoc(endpoint)
    if not doc:
        return None
    first = re.split(r"(?<=[a-z0-9)`])[.;](?:\s|$)", " ".join(doc.split("\n\n")[0].split()))[0]
    return first.strip().rstrip(".") or None


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

    def add_api_route(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        if kwargs.get("summary") is None:
            kwargs["summary"] = docstring_summary(endpoint)
        # A 204 has no body, so it carries no `Content-Type` (JSONResponse would add one).
        if kwargs.get("status_code") == status.HTTP_204_NO_CONTENT and isinstance(
            kwargs.get("response_class", DefaultPlaceholder(None)), DefaultPlaceholder
        ):
            kwargs["response_class"] = Response
        super().add_api_route(path, endpoint, **kwargs)

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
