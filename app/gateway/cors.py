"""CORS for the Electron renderer and browsers, over HTTP and on WebSocket handshakes.

Starlette's `CORSMiddleware` speaks the protocol (preflights, allowed and exposed
headers, `Vary`); this module adds the rules it has no setting for:

- **Opaque origins** (`Origin: null`: a renderer loaded from `file://`, a sandboxed
  iframe, a `data:` page; and `file://`, which older Electron sent) are allowed, when
  listed, **without credentials**. Every sandboxed iframe and file page on every site
  shares the one origin `null`, so allowing it with credentials would hand them all
  whatever the browser attaches on its own. Such a caller gets no
  `Access-Control-Allow-Credentials`, and the `demo_session_id` cookie is neither read
  from its requests nor set on its responses: it identifies itself with what it sends
  explicitly (`Authorization: Bearer`, `?token=` on the WebSocket, `X-Demo-Session-Id`),
  or is a fingerprinted anonymous caller like any client without a cookie.
- **A refused preflight** answers 403 `cors_refused` in the one error shape, naming the
  origin, method or headers refused (Starlette answers `400 text/plain`).
- **WebSocket handshakes** are checked against the same origins: browsers send `Origin`
  on every handshake and enforce nothing themselves, so a page from any site could
  otherwise open a socket riding the visitor's cookie. A handshake from an origin not
  allowed is refused before it is accepted (403 `origin_not_allowed` with the JSON
  body; in a browser, the `error` and `close` events, code 1006). A handshake without
  `Origin` (a desktop or server client, not a browser page) is not affected.

Origins come from `CORS_ORIGINS` (exact) and `CORS_ORIGIN_REGEX` (whole-string match).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware as StarletteCORS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import OPAQUE_ORIGINS
from app.errors import Forbidden
from app.gateway.responses import refuse

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Every header a client of this API sends (besides the CORS-safelisted ones).
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-Request-ID",
    "X-Demo-Session-Id",
    "X-Tenant-Id",
    "X-LLM-API-KEY",
    "X-Table",
    "X-Checksum",
    "X-Backup-Version",
    "X-Backup-Timestamp",
    "X-Backup-Checksum",
    "If-None-Match",
    "If-Modified-Since",
    "If-Match",
)
# Every response header a client of this API reads (a page reads `null` for the others).
EXPOSED_HEADERS = (
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "X-Quota-Reset",
    "X-Demo-Mode",
    "WWW-Authenticate",
    "ETag",
    "Last-Modified",
    "Location",
    "Content-Disposition",
    "X-Checksum",
    "X-Table",
    "X-Backup-Id",
    "X-Backup-Version",
    "X-Backup-Timestamp",
    "X-Backup-Checksum",
)
PREFLIGHT_MAX_AGE_SECONDS = 600

_ORIGIN = b"origin"
_COOKIE = b"cookie"
_SET_COOKIE = b"set-cookie"
_RESPONSE_STARTS = frozenset(
    ("http.response.start", "websocket.accept", "websocket.http.response.start")
)


class CORSRefused(Forbidden):
    error = "cors_refused"


class OriginNotAllowed(Forbidden):
    error = "origin_not_allowed"


def _origin(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == _ORIGIN:
            return value.decode("latin-1")
    return None


def _forget_cookies(scope: Scope, send: Send) -> Send:
    """No cookie identity for an opaque origin: none read, none set.

    The scope's headers are replaced in place, so the layers outside see the same
    scope (the route the router records on it, for instance).
    """
    scope["headers"] = [(key, value) for key, value in scope["headers"] if key != _COOKIE]

    async def send_without_cookies(message: Message) -> None:
        if message["type"] in _RESPONSE_STARTS and message.get("headers"):
            message["headers"] = [
                (key, value) for key, value in message["headers"] if key.lower() != _SET_COOKIE
            ]
        await send(message)

    return send_without_cookies


class CORSMiddleware:
    def __init__(
        self, app: ASGIApp, origins: Sequence[str], origin_regex: str | None = None
    ) -> None:
        self.app = app
        self.opaque_origins = frozenset(origin for origin in origins if origin in OPAQUE_ORIGINS)
        common = {
            "allow_methods": ALLOWED_METHODS,
            "allow_headers": ALLOWED_HEADERS,
            "expose_headers": EXPOSED_HEADERS,
            "max_age": PREFLIGHT_MAX_AGE_SECONDS,
        }
        self.credentialed = StarletteCORS(
            app,
            allow_origins=[origin for origin in origins if origin not in OPAQUE_ORIGINS],
            allow_origin_regex=origin_regex or None,
            allow_credentials=True,
            **common,
        )
        self.opaque = StarletteCORS(
            app, allow_origins=sorted(self.opaque_origins), allow_credentials=False, **common
        )

    def allows(self, origin: str) -> bool:
        """Whether a page from `origin` may call the API (credentials aside)."""
        if origin in OPAQUE_ORIGINS:
            return origin in self.opaque_origins
        return self.credentialed.is_allowed_origin(origin)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _origin(scope) if scope["type"] in ("http", "websocket") else None
        if origin is None:
            await self.app(scope, receive, send)
            return
        opaque = origin in OPAQUE_ORIGINS
        if scope["type"] == "websocket":
            if not self.allows(origin):
                await refuse(
                    scope,
                    receive,
                    send,
                    OriginNotAllowed(f"Pages from origin {origin!r} may not open this socket."),
                )
                return
            await self.app(scope, receive, _forget_cookies(scope, send) if opaque else send)
            return
        # An opaque origin string never reaches the credentialed policy (nor its regex).
        cors = self.opaque if opaque else self.credentialed
        headers = Headers(scope=scope)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(cors, scope, receive, send, headers)
            return
        await cors(scope, receive, _forget_cookies(scope, send) if opaque else send)

    async def _preflight(
        self, cors: StarletteCORS, scope: Scope, receive: Receive, send: Send, headers: Headers
    ) -> None:
        response = cors.preflight_response(request_headers=headers)
        if response.status_code == 200:
            await response(scope, receive, send)
            return
        # Starlette decided; the refusal keeps its CORS headers (Vary among them) and
        # takes our shape, naming what was refused.
        kept = [
            (name, value)
            for name, value in response.headers.items()
            if name not in ("content-type", "content-length")
        ]
        message = _refusal_message(cors, headers) or response.body.decode("latin-1")
        await refuse(scope, receive, send, CORSRefused(message), kept)


def _refusal_message(cors: StarletteCORS, headers: Headers) -> str:
    origin = headers["origin"]
    reasons = []
    if not cors.is_allowed_origin(origin):
        reasons.append(f"origin {origin!r} is not allowed")
    method = headers["access-control-request-method"]
    if method not in cors.allow_methods:
        reasons.append(f"method {method} is not allowed")
    requested = headers.get("access-control-request-headers", "")
    refused = [
        name.strip()
        for name in requested.split(",")
        if name.strip() and name.strip().lower() not in cors.allow_headers
    ]
    if refused:
        noun = "header" if len(refused) == 1 else "headers"
        verb = "is" if len(refused) == 1 else "are"
        reasons.append(f"{noun} {', '.join(refused)} {verb} not allowed")
    if not reasons:
        return ""
    return "CORS preflight refused: " + "; ".join(reasons) + "."
