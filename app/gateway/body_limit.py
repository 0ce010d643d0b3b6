"""Caps on request headers and bodies, applied before anything reads a body whole (SPEC §12.6).

- Headers: the request line and headers over `MAX_HEADER_BYTES` → 431, on HTTP
  requests and WebSocket handshakes alike.
- Bodies, by the route's declared `BodyKind`: JSON routes `MAX_JSON_BODY_BYTES`,
  the webhook `MAX_WEBHOOK_BODY_BYTES`. A `Content-Length` over the cap is refused
  before a byte is read; otherwise the body is read here, under the cap, and
  handed on once complete, so a chunked body with no length is refused the moment
  it passes the cap and the route never receives more than the cap. Upload routes
  pass untouched: they stream to disk and count against `MAX_UPLOAD_BYTES` themselves.

A refusal closes the connection (`Connection: close`): the server then stops
reading the rest of an oversized body instead of parsing it to the end.
"""

from __future__ import annotations

from collections import deque

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from app.config import Settings
from app.errors import error_response
from app.kit.policy import BodyKind, RoutePolicies

# ": " and CRLF around each header line, as it was on the wire.
_HEADER_LINE_OVERHEAD = 4


def header_bytes(scope: Scope) -> int:
    """The size of the request line's target and the headers, about as sent."""
    target = scope.get("raw_path") or scope["path"].encode()
    size = len(target) + len(scope.get("query_string", b""))
    for name, value in scope["headers"]:
        size += len(name) + len(value) + _HEADER_LINE_OVERHEAD
    return size


def declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        # The server's parser refuses a malformed length; the read below still caps the body.
        return None


def _too_large(limit: int):
    return error_response(
        413,
        "payload_too_large",
        f"The request body is larger than the {limit} bytes allowed on this route.",
        headers={"Connection": "close"},
    )


def _headers_too_large(limit: int):
    return error_response(
        431,
        "request_headers_too_large",
        f"The request headers are larger than the {limit} bytes allowed.",
        headers={"Connection": "close"},
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, policies: RoutePolicies, settings: Settings) -> None:
        self.app = app
        self.policies = policies
        self.max_header_bytes = settings.MAX_HEADER_BYTES
        self.caps: dict[BodyKind, int | None] = {
            BodyKind.JSON: settings.MAX_JSON_BODY_BYTES,
            BodyKind.WEBHOOK: settings.MAX_WEBHOOK_BODY_BYTES,
            BodyKind.UPLOAD: None,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if header_bytes(scope) > self.max_header_bytes:
            await self._refuse_headers(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        cap = self.caps[self.policies.of(scope).body]
        if cap is None:
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > cap:
            await _too_large(cap)(scope, receive, send)
            return

        received: deque[Message] = deque()
        size = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":  # the client went away
                break
            size += len(message.get("body", b""))
            if size > cap:
                await _too_large(cap)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            # The body as it arrived, then the server's own messages (a disconnect).
            if received:
                return received.popleft()
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse_headers(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _headers_too_large(self.max_header_bytes)
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            # Without the denial-response extension the server answers the handshake 403.
            await websocket.close(code=1008)
