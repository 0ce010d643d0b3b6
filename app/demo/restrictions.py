"""What a demo session may do (SPEC §9.3), decided in one table.

Reads are allowed; chat is allowed (the quota gate counts it); deleting data,
billing, backups, installing marketplace plugins and cloud-storage writes are
refused. A write the table does not name is refused too: a new route must be
allowed here on purpose before demo visitors can call it.

The gateway calls `demo_restriction(method, path)` for every request it
resolved to a demo session and answers a refusal with `restriction_error`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

from app.errors import Forbidden

API_PREFIX: Final = "/api/v1"
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
ANY: Final = "*"
WRITE: Final = "WRITE"  # every method except the read ones


@dataclass(frozen=True, slots=True)
class Rule:
    method: str  # an HTTP method, "WS" (WebSocket), ANY, or WRITE
    pattern: str  # path under /api/v1; `{name}` = one segment, a trailing `/**` = any suffix
    operation: str | None  # None: allowed; else the human name of the refused operation

    def matches(self, method: str, path: str) -> bool:
        if self.method == ANY:
            method_ok = True
        elif self.method == WRITE:
            method_ok = method not in READ_METHODS
        else:
            method_ok = method == self.method
        return method_ok and _compile(self.pattern).fullmatch(path) is not None


@functools.lru_cache(maxsize=128)
def _compile(pattern: str) -> re.Pattern[str]:
    suffix = ""
    if pattern.endswith("/**"):
        pattern, suffix = pattern[:-3], r"(?:/.*)?"
    parts = [
        "[^/]+" if segment.startswith("{") and segment.endswith("}") else re.escape(segment)
        for segment in pattern.split("/")
    ]
    return re.compile("/".join(parts) + suffix)


BILLING = "Billing"
BACKUPS = "Backups"
PLUGIN_INSTALL = "Installing marketplace plugins"
STORAGE_WRITES = "Writing to cloud storage"
DELETES = "Deleting data"
PLUGIN_CHANGES = "Publishing or rating marketplace plugins"
ADMINISTRATION = "Administration"
OTHER_WRITES = "This operation"

# First match wins. Order: specific allowances, specific refusals, then the broad rules.
POLICY: Final[tuple[Rule, ...]] = (
    # Ending one's own session is the one delete a demo may do (the route checks "own").
    Rule("DELETE", "/demo/sessions/{session_id}", None),
    Rule("POST", "/demo/sessions", None),
    Rule("POST", "/demo/sessions/{session_id}/extend", None),
    Rule("POST", "/demo/sessions/{session_id}/workspace/actions", None),
    Rule("POST", "/demo/examples/init", None),
    # Chat, over REST and the WebSocket, is what the demo is for.
    Rule("POST", "/chat/**", None),
    Rule("WS", "/chat/stream", None),
    # A visitor may turn into a user at any time.
    Rule("POST", "/auth/register", None),
    Rule("POST", "/auth/login", None),
    Rule("POST", "/auth/refresh", None),
    Rule("POST", "/auth/logout", None),
    # Searching vectors is a read sent as POST.
    Rule("POST", "/storage/vectors/search", None),
    Rule(ANY, "/billing/**", BILLING),
    Rule(ANY, "/backup/**", BACKUPS),
    Rule(ANY, "/admin/**", ADMINISTRATION),
    Rule("DELETE", "/**", DELETES),
    Rule(WRITE, "/plugins/{plugin_id}/install", PLUGIN_INSTALL),
    Rule(WRITE, "/plugins/**", PLUGIN_CHANGES),
    Rule(WRITE, "/storage/**", STORAGE_WRITES),
    Rule("GET", "/**", None),
    Rule("HEAD", "/**", None),
    Rule("OPTIONS", "/**", None),
    Rule(ANY, "/**", OTHER_WRITES),
)


def _normalise(method: str, path: str) -> tuple[str, str]:
    method = method.upper()
    if method == "WEBSOCKET":
        method = "WS"
    if path.startswith(API_PREFIX + "/") or path == API_PREFIX:
        path = path[len(API_PREFIX) :]
    path = "/" + path.strip("/")
    return method, path


def demo_restriction(method: str, path: str) -> str | None:
    """The name of the operation a demo session may not do, or None when it is allowed."""
    method, path = _normalise(method, path)
    for rule in POLICY:
        if rule.matches(method, path):
            return rule.operation
    return OTHER_WRITES


def restriction_error(operation: str) -> Forbidden:
    return Forbidden(
        f"{operation} is not available in a demo session. "
        "Create a free account (POST /api/v1/auth/register) to use it.",
        error="demo_restriction",
    )
