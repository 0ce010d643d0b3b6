"""What routes declare for the OpenAPI document beyond their signature.

The headers a client sends or reads, the credentials a route really takes and
bodies a route reads raw are declared here once; routes use these helpers in
their `responses=` / `openapi_extra=`, and `app/openapi.py` adds the gateway's
part (rate limit, quota, request id) to every operation from its policy.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# --- headers --------------------------------------------------------------------------
# Response headers, as `components.headers`; an operation refers to them by name.
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request id: the one the client sent, or a new one. Errors carry "
        "it as `request_id` too.",
        "schema": {"type": "string", "examples": ["9f1c2d3e4b5a69788a9b0c1d2e3f4a5b"]},
    },
    "RateLimit-Limit": {
        "description": "Requests the caller may make in the moving one-minute window.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Remaining": {
        "description": "Requests left in the window.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until a request of the window frees up.",
        "schema": {"type": "integer"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    },
    "X-Quota-Reset": {
        "description": "When a daily quota refusal ends: the next 00:00 UTC (ISO 8601).",
        "schema": {"type": "string", "format": "date-time", "examples": ["2025-03-02T00:00:00Z"]},
    },
    "X-Demo-Mode": {
        "description": "`true` when the answer comes from the offline demo model (the caller's "
        "LLM quota is spent); absent otherwise.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "WWW-Authenticate": {
        "description": "The scheme to authenticate with (`Bearer`).",
        "schema": {"type": "string"},
    },
    "Set-Cookie": {
        "description": "`demo_session_id`: an anonymous visitor's id, set on the first response "
        "so the visitor keeps one identity and one quota (HttpOnly, SameSite=Lax).",
        "schema": {"type": "string"},
    },
    "X-Checksum": {
        "description": "Hex SHA-256 of the stored bytes.",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
    "X-Table": {
        "description": "The table the record belongs to.",
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": 'Strong entity tag: the SHA-256 of the stored bytes in quotes (`"<hex>"`); '
        "send it back in `If-None-Match` (304 while current) or `If-Match` (412 if not).",
        "schema": {"type": "string", "pattern": '^"[0-9a-f]{64}"$'},
    },
    "Content-Length": {
        "description": "Size of the bytes, in bytes.",
        "schema": {"type": "integer"},
    },
    "Last-Modified": {
        "description": "When the record was last written, or the backup's own timestamp "
        "(an HTTP date, whole seconds).",
        "schema": {"type": "string", "examples": ["Sat, 01 Mar 2025 09:30:00 GMT"]},
    },
    "X-Backup-Id": {"description": "The backup's id.", "schema": {"type": "string"}},
    "X-Backup-Version": {
        "description": "The client's version label of the backup.",
        "schema": {"type": "string"},
    },
    "X-Backup-Timestamp": {
        "description": "The backup's timestamp (ISO 8601).",
        "schema": {"type": "string", "format": "date-time"},
    },
}


def header_refs(*names: str) -> dict[str, dict[str, str]]:
    """A response's `headers`, by reference to `RESPONSE_HEADERS`."""
    for name in names:
        if name not in RESPONSE_HEADERS:
            raise KeyError(f"undeclared response header {name!r}")
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


LLM_KEY_PARAMETER: dict[str, Any] = {
    "name": "X-LLM-API-KEY",
    "in": "header",
    "required": False,
    "description": "The caller's own LLM key, for this request only (BYOK): `provider:key` "
    "(`openai:sk-…`, `anthropic:sk-ant-…`) or a bare `sk-…` / `sk-ant-…` key. Lifts the daily "
    "LLM quota; a malformed key, or one for a provider not accepted, is a 400.",
    "schema": {"type": "string", "examples": ["openai:sk-proj-2xAMPLEk3y"]},
}


TENANT_PARAMETER: dict[str, Any] = {
    "name": "X-Tenant-Id",
    "in": "header",
    "required": False,
    "description": "The workspace the request acts in (an id from GET /api/v1/tenants); "
    "without it, the access token's default (personal) workspace. Checked against the "
    "caller's membership on every request: 403 `not_a_member` if the caller is not a member "
    "(whether or not the workspace exists), 400 `invalid_tenant_header` if it is not an id.",
    "schema": {"type": "string", "format": "uuid"},
}


def reads_llm_key() -> dict[str, Any]:
    """`openapi_extra` of a route outside the quota gate that reads `X-LLM-API-KEY`."""
    return {"parameters": [LLM_KEY_PARAMETER]}


# --- credentials ----------------------------------------------------------------------
ACCESS_TOKEN = "HTTPBearer"  # app/auth/dependencies.py: the access token of /auth/login
DEMO_SESSION_TOKEN = "DemoSessionToken"  # `session_token` of POST /demo/sessions
DEMO_SESSION_ID = "DemoSessionId"  # `session_id` of POST /demo/sessions, as a header

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    ACCESS_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The access token of POST /api/v1/auth/login (or register, refresh).",
    },
    DEMO_SESSION_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "`session_token` from POST /api/v1/demo/sessions.",
    },
    DEMO_SESSION_ID: {
        "type": "apiKey",
        "in": "header",
        "name": "X-Demo-Session-Id",
        "description": "`session_id` from POST /api/v1/demo/sessions: the session's id is "
        "its credential.",
    },
}

# Whoever calls: a user, a demo session, or an anonymous visitor (the empty requirement).
CALLER_SECURITY: list[dict[str, list[str]]] = [
    {},
    {ACCESS_TOKEN: []},
    {DEMO_SESSION_TOKEN: []},
    {DEMO_SESSION_ID: []},
]


# FastAPI merges an `openapi_extra` list into the one it derived (the security of the
# route's dependencies): a route's own word on its credentials goes under this key, and
# replaces that list when the document is completed.
_SECURITY = "x-security"


def no_credentials() -> dict[str, Any]:
    """`openapi_extra` of a route that takes no credentials (or carries them in its path)."""
    return {_SECURITY: []}


def any_caller() -> dict[str, Any]:
    """`openapi_extra` of a route that serves users, demo sessions and anonymous visitors."""
    return {_SECURITY: CALLER_SECURITY}


def declared_security(operation: dict[str, Any]) -> list[dict[str, list[str]]] | None:
    """The security a route declared with the helpers above, taken out of its operation."""
    return operation.pop(_SECURITY, None)


# --- raw bodies -----------------------------------------------------------------------
# Models that only describe a body a route reads raw; `app/openapi.py` adds their schemas.
_RAW_BODY_MODELS: dict[str, type[BaseModel]] = {}


def raw_body(
    model: type[BaseModel], *, description: str, media_type: str = "application/json"
) -> dict[str, Any]:
    """`openapi_extra` of a route that reads its body raw (to verify a signature, say)."""
    _RAW_BODY_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {media_type: {"schema": schema}},
        }
    }


def raw_body_models() -> list[type[BaseModel]]:
    return list(_RAW_BODY_MODELS.values())
