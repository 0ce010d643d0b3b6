"""Refuses a caller's LLM key that is malformed or names a provider not accepted.

Before the rate limit and the quota gate, so a refused key is never counted. An
accepted key is left parsed in the scope's state for the gate and the routes.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import AppError
from app.gateway.responses import refuse
from app.kit.byok import LLM_KEY, BYOKPolicy, llm_key_from_headers


class BYOKGuardMiddleware:
    """Refuses (400) a malformed X-LLM-API-KEY, or one for a provider not accepted.

    Before the rate limit and the quota gate, so a refused key is never counted.
    """

    def __init__(self, app: ASGIApp, policy: BYOKPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            try:
                key = llm_key_from_headers(scope.get("headers", []))
                if key is not None:
                    scope.setdefault("state", {})[LLM_KEY] = self.policy.check(key)
            except AppError as error:
                await refuse(scope, receive, send, error)
                return
        await self.app(scope, receive, send)
