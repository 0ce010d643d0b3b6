"""Completes the OpenAPI document with what the gateway does to every route.

Routes declare their own outcomes; the gateway adds more that no route sees,
read here from each route's gateway policy (`app/kit/policy.py`):
- every response: `X-Request-ID`; 431 for oversized headers; 400/413/422 for a body;
- rate-limited routes: `RateLimit-*` on every response, 429 with `Retry-After`,
  503 when a limit's store is down, 403 `demo_restriction` where a demo session
  is refused;
- units of work: the caller's optional `X-LLM-API-KEY`, `X-Quota-Reset` on a
  daily-quota 429, and any caller's credentials (user, demo session, anonymous).

Every 4xx/5xx is documented as our one error shape (`ErrorBody`), 422 included,
and routes without credentials say so (`security: []`). A client generated from
the document (the desktop app's) must know all of it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema

from app.chat.asyncapi import build_asyncapi
from app.config import Settings
from app.demo.restrictions import demo_restriction
from app.errors import ERROR_RESPONSES, ErrorBody
from app.kit.openapi import (
    ACCESS_TOKEN,
    CALLER_SECURITY,
    LLM_KEY_PARAMETER,
    RESPONSE_HEADERS,
    SECURITY_SCHEMES,
    TENANT_PARAMETER,
    declared_security,
    header_refs,
    raw_body_models,
)
from app.kit.policy import RoutePolicies, RoutePolicy

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
# FastAPI's own 422 body, which our error handler never sends.
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_RATE_LIMIT = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")

ASYNCAPI_URL = "/asyncapi.json"
DESCRIPTION = f"""Cloud backend of the Adiuva desktop app, behind a quota gateway.

Every error, whatever the route, is an `ErrorBody`: `{{"error", "message", "request_id"}}`.

The WebSocket chat protocol (`/api/v1/chat/stream`) is described by the AsyncAPI 3
document at [{ASYNCAPI_URL}]({ASYNCAPI_URL}).
"""


def _error(description: str, *names: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    if names:
        response["headers"] = header_refs(*names)
    return response


def _is_error(code: str) -> bool:
    return code.isdigit() and int(code) >= 400


def _credentials(operation: dict[str, Any], policy: RoutePolicy) -> list[dict[str, list[str]]]:
    """The route's security as it really is; FastAPI lists only what its dependencies use."""
    declared = declared_security(operation)
    if declared is not None:
        operation["security"] = declared
    elif "security" not in operation:
        operation["security"] = CALLER_SECURITY if policy.unit_of_work else []
    return operation["security"]


def _complete(path: str, method: str, operation: dict[str, Any], policy: RoutePolicy) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    limited = policy.rate_limited
    security = _credentials(operation, policy)
    anonymous = not security or {} in security

    parameters: list[dict[str, Any]] = operation.setdefault("parameters", [])
    if policy.unit_of_work and all(p.get("name") != LLM_KEY_PARAMETER["name"] for p in parameters):
        parameters.append(LLM_KEY_PARAMETER)
    # Every route a signed-in user calls acts in a workspace: X-Tenant-Id may choose it.
    acts_in_workspace = any(ACCESS_TOKEN in requirement for requirement in security)
    if acts_in_workspace:
        parameters.append(TENANT_PARAMETER)
        responses.setdefault("400", _error("Malformed `X-Tenant-Id`"))
        responses.setdefault("403", _error("Not a member of the workspace `X-Tenant-Id` names"))
    if not parameters:
        del operation["parameters"]
    if any(p.get("name") == LLM_KEY_PARAMETER["name"] for p in parameters):
        responses.setdefault("400", _error("Malformed or refused `X-LLM-API-KEY`"))

    if "requestBody" in operation:
        responses.setdefault("400", _error("The body could not be read"))
        responses.setdefault("413", _error("The body is over the route's size cap"))
        responses.setdefault("422", _error(ERROR_RESPONSES[422]["description"]))
    if any(requirement for requirement in security):
        responses.setdefault("401", _error("Missing, invalid or expired credentials"))
    elif limited:
        # The gateway refuses a credential that does not hold on every route it limits,
        # public ones too, rather than serving the caller as anonymous.
        responses.setdefault("401", _error("A credential was sent that is invalid or expired"))
    responses.setdefault("431", _error("The request headers are over the size cap"))
    if limited:
        quota = ("X-Quota-Reset",) if policy.unit_of_work else ()
        responses.setdefault(
            "429", _error("Rate limit or daily quota exceeded", "Retry-After", *quota)
        )
        responses.setdefault(
            "503", _error("A limit's store is unavailable, or the service is at capacity")
        )
        if demo_restriction(method, path) is not None:
            responses.setdefault("403", _error("Not available in a demo session"))

    for code, response in responses.items():
        if "$ref" in response:
            continue
        if _is_error(code):
            # Whatever a route or FastAPI put there (its 422 HTTPValidationError): our shape.
            response["content"] = {"application/json": {"schema": _ERROR_REF}}
        names: list[str] = ["X-Request-ID"]
        if limited:
            names += _RATE_LIMIT
            if anonymous:
                names.append("Set-Cookie")
        if code in ("429", "503"):
            names.append("Retry-After")
        if code == "429" and policy.unit_of_work:
            names.append("X-Quota-Reset")
        if code == "401":
            names.append("WWW-Authenticate")
        headers = response.setdefault("headers", {})
        for name, ref in header_refs(*names).items():
            headers.setdefault(name, ref)


def _drop_unused_validation_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    text = repr(document)
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        if f"#/components/schemas/{name}'" in text:
            raise RuntimeError(f"the document still refers to FastAPI's {name}")


def build_document(app: FastAPI, policies: RoutePolicies) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _, definitions = models_json_schema(
        [(model, "validation") for model in (ErrorBody, *raw_body_models())],
        ref_template="#/components/schemas/{model}",
    )
    for name, schema in definitions.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    components["headers"] = dict(RESPONSE_HEADERS)
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS:
                policy = policies.resolve(method.upper(), path)
                _complete(path, method.upper(), operation, policy)
    _drop_unused_validation_schemas(document)
    components["schemas"] = dict(sorted(schemas.items()))
    return document


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app, app.state.route_policies)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_asyncapi(app: FastAPI, settings: Settings) -> None:
    """`GET /asyncapi.json`: the WebSocket chat protocol (`app/chat/asyncapi.py`)."""

    @app.get(ASYNCAPI_URL, include_in_schema=False)
    async def asyncapi(request: Request) -> JSONResponse:
        secure = request.url.scheme in ("https", "wss")
        return JSONResponse(build_asyncapi(settings, host=request.url.netloc, secure=secure))
