"""Completes the OpenAPI document with what the middleware adds to every route.

Routes declare their own outcomes; the gateway adds more that no route sees:
429/503 from the rate limiter and the quota gate, 403 `demo_restriction`,
400 for an unreadable body, 413/431 from the size caps, and the `X-Request-ID`
/ `RateLimit-*` headers. A client generated from the document (the desktop
app's) must know them all.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.demo.restrictions import demo_restriction
from app.errors import ERROR_RESPONSES

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": kind}}


REQUEST_ID = {"X-Request-ID": _header("The request id (echoed or generated)")}
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": _header("Requests allowed in the moving one-minute window", "integer"),
    "RateLimit-Remaining": _header("Requests left in the window", "integer"),
    "RateLimit-Reset": _header("Seconds until a request frees up", "integer"),
}
RETRY_AFTER = {"Retry-After": _header("Seconds to wait before retrying", "integer")}


def _error(code: int, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


def _complete(path: str, method: str, operation: dict[str, Any], exempt: set[str]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    limited = path.startswith("/api/") and path not in exempt
    if "requestBody" in operation:
        responses.setdefault("400", _error(400, "The body could not be read"))
        responses.setdefault("422", _error(422, ERROR_RESPONSES[422]["description"]))
        responses.setdefault("413", _error(413, "The body is over the route's size cap"))
    responses.setdefault("431", _error(431, "The request headers are over the size cap"))
    if limited:
        responses.setdefault("429", _error(429, "Rate limit or daily quota exceeded", RETRY_AFTER))
        responses.setdefault(
            "503", _error(503, "A limit's store is unavailable, or the service is at capacity")
        )
        if demo_restriction(method, path) is not None:
            responses.setdefault("403", _error(403, "Not available in a demo session"))
    for code, response in responses.items():
        if "$ref" in response:
            continue
        headers = response.setdefault("headers", {})
        headers.update(REQUEST_ID)
        if limited and code != "429":
            headers.update(RATE_LIMIT_HEADERS)
        elif code == "429":
            headers.update(RETRY_AFTER)


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        exempt = app.state.route_policies.exempt_paths()
        for path, item in document.get("paths", {}).items():
            for method, operation in item.items():
                if method in {"get", "put", "post", "delete", "patch", "head", "options"}:
                    _complete(path, method.upper(), operation, exempt)
        document.setdefault("components", {}).setdefault("schemas", {})
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
