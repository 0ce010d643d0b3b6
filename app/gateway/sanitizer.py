"""Sanitizer: keeps server prompt material out of chat responses and WebSocket frames.

JSON bodies of routes declared `sanitized` (`POST /chat`) are decoded and
every string value redacted (so the JSON stays valid). WebSocket text frames are
redacted too; token frames (`{"token": …}`) go through one stream redactor per
connection, so a run split across frames is caught. What is redacted and how:
`app/gateway/redaction.py`.

The request's own text — the JSON body, the socket's first frame — is kept as it
passes (a reference, not a copy) and read only if an answer holds a run of server
text or a reasoning tag: what the caller sent comes back untouched. Other
responses — storage and backup bytes included — pass through untouched after one
policy lookup.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.gateway.redaction import Redactor, RequestText, StreamRedactor
from app.kit.policy import RoutePolicies


class SanitizerMiddleware:
    def __init__(self, app: ASGIApp, policies: RoutePolicies) -> None:
        self.app = app
        self.policies = policies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            redactor: Redactor = scope["app"].state.redactor
            sanitizer = _WebSocketSanitizer(redactor, send)
            await self.app(scope, sanitizer.receive(receive), sanitizer.send)
        elif scope["type"] == "http" and self.policies.of(scope).sanitized:
            redactor = scope["app"].state.redactor
            body: list[bytes] = []

            async def receive_keeping_body() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    body.append(message.get("body", b""))
                return message

            request = redactor.request(lambda: b"".join(body))
            sanitizer = _JSONBodySanitizer(redactor, request, send)
            await self.app(scope, receive_keeping_body, sanitizer.send)
        else:
            await self.app(scope, receive, send)


class _JSONBodySanitizer:
    def __init__(self, redactor: Redactor, request: RequestText, send: Send) -> None:
        self.redactor = redactor
        self.request = request
        self.downstream = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.active = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            content_type = MutableHeaders(scope=message).get("content-type", "")
            self.active = content_type.startswith("application/json")
            if not self.active:
                await self.downstream(message)
            else:
                self.start = message
            return
        if message["type"] != "http.response.body" or not self.active:
            await self.downstream(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = self._sanitized(b"".join(self.chunks))
        assert self.start is not None
        headers = MutableHeaders(scope=self.start)
        headers["content-length"] = str(len(body))
        await self.downstream(self.start)
        await self.downstream({"type": "http.response.body", "body": body})

    def _sanitized(self, body: bytes) -> bytes:
        try:
            document = json.loads(body)
        except ValueError:
            return self.redactor.redact(body.decode("utf-8", "replace"), self.request).encode()
        cleaned = self.redactor.redact_json(document, self.request)
        if cleaned == document:
            return body
        return json.dumps(cleaned, ensure_ascii=False, separators=(",", ":")).encode()


class _WebSocketSanitizer:
    def __init__(self, redactor: Redactor, send: Send) -> None:
        self.redactor = redactor
        self.downstream = send
        self.first_frame: str | bytes | None = None  # the client's request
        self.request = redactor.request(lambda: self.first_frame or b"")
        self.stream: StreamRedactor = redactor.stream(self.request)

    def receive(self, receive: Receive) -> Receive:
        async def receive_keeping_request() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive" and self.first_frame is None:
                self.first_frame = message.get("text") or message.get("bytes")
            return message

        return receive_keeping_request

    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.send" and message.get("text") is not None:
            await self._send_text(message["text"])
            return
        if message["type"] == "websocket.close":
            await self._flush()
        await self.downstream(message)

    async def _send_text(self, text: str) -> None:
        try:
            frame: Any = json.loads(text)
        except ValueError:
            frame = None
        if isinstance(frame, dict) and isinstance(frame.get("token"), str) and len(frame) <= 2:
            for safe in self.stream.feed_frames(frame["token"]):
                await self._emit({**frame, "token": safe})
            return
        if frame is not None and not _has_text(frame):
            # A control frame (a ping, a progress count) carries nothing to redact and
            # must not flush a tail that may be half of a fragment.
            await self.downstream({"type": "websocket.send", "text": text})
            return
        await self._flush()
        if frame is None:
            safe = self.redactor.redact(text, self.request)
            await self.downstream({"type": "websocket.send", "text": safe})
            return
        cleaned = self.redactor.redact_json(frame, self.request)
        out = text if cleaned == frame else json.dumps(cleaned, ensure_ascii=False)
        await self.downstream({"type": "websocket.send", "text": out})

    async def _flush(self) -> None:
        rest = self.stream.flush()
        if rest:
            await self._emit({"token": rest})

    async def _emit(self, frame: dict[str, Any]) -> None:
        await self.downstream(
            {"type": "websocket.send", "text": json.dumps(frame, ensure_ascii=False)}
        )


def _has_text(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, dict):
        return any(_has_text(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_text(item) for item in value)
    return False
