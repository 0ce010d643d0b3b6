"""What the gateway does for a route, declared once on the route itself.

    @router.post("/chat", ...)
    @gateway_policy(unit_of_work=True, sanitized=True)
    async def chat(...): ...

`RoutePolicies` reads the declarations off each router's routes and answers,
per request and before routing, which policy applies. The middleware
constructors receive it; no path list lives elsewhere.
Routes that declare nothing get `DEFAULT_POLICY`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route, WebSocketRoute, compile_path
from starlette.types import Scope

API_PREFIX = "/api/"
_ATTRIBUTE = "__gateway_policy__"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class BodyKind(StrEnum):
    """Which size cap applies to a request body (the limits are settings)."""

    JSON = "json"  # MAX_JSON_BODY_BYTES
    UPLOAD = "upload"  # MAX_UPLOAD_BYTES, counted by the route while it streams
    WEBHOOK = "webhook"  # MAX_WEBHOOK_BODY_BYTES


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    rate_limited: bool = True  # the tier rate limit applies (SPEC §3.2 lists the exempt)
    unit_of_work: bool = False  # admitted and counted by the quota gate (SPEC §3.3)
    sanitized: bool = False  # JSON responses pass the prompt sanitizer (SPEC §3.5)
    body: BodyKind = BodyKind.JSON


DEFAULT_POLICY = RoutePolicy()
# Outside /api/ (metrics, docs): no limit, no gate.
UNGATED_POLICY = RoutePolicy(rate_limited=False)


def gateway_policy(
    *,
    rate_limited: bool = True,
    unit_of_work: bool = False,
    sanitized: bool = False,
    body: BodyKind = BodyKind.JSON,
) -> Callable[[Endpoint], Endpoint]:
    """Declare a route's gateway policy; put it under the router's decorator."""
    policy = RoutePolicy(rate_limited, unit_of_work, sanitized, body)

    def declare(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _ATTRIBUTE, policy)
        return endpoint

    return declare


def method_of(scope: Scope) -> str:
    return "WEBSOCKET" if scope["type"] == "websocket" else scope["method"]


class RoutePolicies:
    """The policy of every route, looked up by method and raw path before routing.

    Paths without parameters are one dictionary lookup; the few parameterised
    routes that declare a policy are matched by their compiled pattern.
    """

    def __init__(self) -> None:
        self._static: dict[tuple[str, str], RoutePolicy] = {}
        self._patterns: list[tuple[frozenset[str], re.Pattern[str], RoutePolicy]] = []

    def load(self, routes: Iterable[BaseRoute], prefix: str = "") -> None:
        """Read the declarations of a router's routes, mounted under `prefix`."""
        for route in routes:
            if isinstance(route, WebSocketRoute):
                methods = frozenset({"WEBSOCKET"})
            elif isinstance(route, Route):
                methods = frozenset(route.methods or ())
            else:
                continue
            policy = getattr(route.endpoint, _ATTRIBUTE, None)
            if policy is None:
                continue
            path = prefix + route.path
            if route.param_convertors:
                self._patterns.append((methods, compile_path(path)[0], policy))
            else:
                for method in methods:
                    self._static[(method, path)] = policy

    def declare(self, method: str, path: str, policy: RoutePolicy) -> None:
        """Declare a policy for a route added after `load` (a test's probe route)."""
        self._static[(method, path)] = policy

    def of(self, scope: Scope) -> RoutePolicy:
        """The policy of this request; computed once and kept in the scope's state."""
        state = scope.setdefault("state", {})
        policy = state.get("gateway_policy")
        if policy is None:
            policy = self.resolve(method_of(scope), scope["path"])
            state["gateway_policy"] = policy
        return policy

    def resolve(self, method: str, path: str) -> RoutePolicy:
        """The policy of `method` on `path` (a request's path, or a route's path template)."""
        if not path.startswith(API_PREFIX):
            return UNGATED_POLICY
        policy = self._static.get((method, path))
        if policy is not None:
            return policy
        for methods, pattern, candidate in self._patterns:
            if method in methods and pattern.match(path):
                return candidate
        return DEFAULT_POLICY
