"""Outermost middleware: request id in and out, JSON access log, last-resort 500.

Pure ASGI, so it costs little and sees WebSockets and streaming responses too.
"""

from __future__ import annotations

import logging
import os
import re
import time
from functools import lru_cache
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.demo.session_ref import redact_session_path
from app.errors import error_response
from app.log import reset_request_id, set_request_id
from app.metrics import ACTIVE_STREAMS, LATENCY, REQUESTS

log = logging.getLogger("app.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


def route_template(scope: Scope) -> str:
    """The matched route as a template (`/api/v1/plugins/{plugin_id}`), for metric labels.

    Built from the path and its parameters, so ids never become label values.
    """
    if scope.get("route") is None:
        return "unmatched"
    params = {str(value): name for name, value in (scope.get("path_params") or {}).items()}
    if not params:
        return scope["path"]
    return "/".join(
        f"{{{params[segment]}}}" if segment in params else segment
        for segment in scope["path"].split("/")
    )


# The labelled children of the request metrics, one per (method, route[, status]):
# looking a child up through `labels()` on every request costs more than using it.
@lru_cache(maxsize=4096)
def _request_counter(method: str, route: str, status: str):
    return REQUESTS.labels(method, route, status)


@lru_cache(maxsize=4096)
def _latency_histogram(method: str, route: str):
    return LATENCY.labels(method, route)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        token = set_request_id(request_id)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                # (the second: a WebSocket handshake refused with an HTTP response)
                status["code"] = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            elif message["type"] == "websocket.accept":
                status["code"] = 101
                ACTIVE_STREAMS.inc()
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"path": redact_session_path(scope["path"])})
            if scope["type"] == "http" and status["code"] is None:
                response = error_response(
                    500, "internal_error", "An unexpected error occurred. It has been logged."
                )
                await response(scope, receive, send_with_id)
            elif scope["type"] == "websocket" and status["code"] is None:
                await send({"type": "websocket.close", "code": 1011})
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope.get("method", "WS")
            if status["code"] == 101:
                ACTIVE_STREAMS.dec()
            _request_counter(method, route, str(status["code"] or 0)).inc()
            _latency_histogram(method, route).observe(elapsed)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": method,
                        # A demo session's id in the path is its credential: logged as a hash.
                        "path": redact_session_path(scope["path"]),
                        "status": status["code"],
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            reset_request_id(token)
