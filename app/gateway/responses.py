"""Refusing a request from middleware, over HTTP or WebSocket, in the one error shape."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Receive, Scope, Send

from app.errors import AppError, error_response
from app.metrics import REFUSALS

# A refused WebSocket handshake closes with a code the client can act on.
_WS_CLOSE_CODES = {429: 1013, 503: 1013, 500: 1011}


async def refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    error: AppError,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> None:
    REFUSALS.labels(error.error).inc()
    headers = {**error.headers, **dict(extra_headers)}
    response = error_response(error.status_code, error.error, error.message, headers=headers)
    if scope["type"] == "http":
        await response(scope, receive, send)
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        # Denial response: the client sees a real HTTP status and the JSON body.
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
        return
    await send(
        {
            "type": "websocket.close",
            "code": _WS_CLOSE_CODES.get(error.status_code, 1008),
            "reason": error.error[:120],
        }
    )
