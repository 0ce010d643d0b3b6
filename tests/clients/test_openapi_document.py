"""The OpenAPI document as client generators read it, and the docs pages that show it.

The document's own checks need no database (it is built from the routes); the
served pages, assets and 204s go through the app on both databases.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate

from app.kit.policy import RoutePolicies
from app.main import create_app
from tests.support.builders import register
from tests.support.settings import make_settings

METHODS = {"get", "put", "post", "delete", "patch"}
OPERATION_ID = re.compile(r"^[a-z]+(-[a-z0-9]+)+$")
RATE_LIMIT_HEADERS = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}


@pytest.fixture(scope="module")
def document_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    directory = tmp_path_factory.mktemp("openapi")
    return create_app(make_settings("sqlite+aiosqlite://", directory / "data"))


@pytest.fixture(scope="module")
def document(document_app: FastAPI) -> dict[str, Any]:
    return document_app.openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def op(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return document["paths"][f"/api/v1{path}"][method]


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_operation_ids_are_unique_and_read_domain_action(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert [i for i in ids if not OPERATION_ID.match(i)] == []
    assert op(document, "post", "/auth/register")["operationId"] == "auth-register"
    assert op(document, "get", "/quota/status")["operationId"] == "quota-status"
    assert op(document, "post", "/chat")["operationId"] == "chat-send-message"
    assert op(document, "get", "/demo/sessions/{session_id}")["operationId"] == "demo-get-session"


def test_every_operation_has_a_real_summary(
    document: dict[str, Any], document_app: FastAPI
) -> None:
    # FastAPI's default summary is the function name, title-cased ("Me", "Quota Status").
    defaults = {
        route.name.replace("_", " ").title()
        for route in document_app.routes
        if hasattr(route, "name") and route.name
    }
    for path, method, operation in operations(document):
        summary = operation.get("summary", "")
        assert summary and summary not in defaults, f"{method} {path}: {summary!r}"
        assert len(summary.split()) >= 2, f"{method} {path}: {summary!r}"


def test_schema_names_are_unique_and_the_demo_profile_has_its_own(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    assert not [name for name in schemas if "__" in name]  # FastAPI's de-duplicated names
    assert "email" in schemas["UserProfile"]["properties"]
    workspace_profile = schemas["Workspace"]["properties"]["user_profile"]
    assert workspace_profile == {"$ref": "#/components/schemas/PersonaProfile"}


def test_every_error_is_the_error_body(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert {"error", "message", "request_id"} <= set(schemas["ErrorBody"]["properties"])
    for path, method, operation in operations(document):
        errors = {code: r for code, r in operation["responses"].items() if int(code) >= 400}
        assert "431" in errors, f"{method} {path}"
        for code, response in errors.items():
            assert response["content"] == {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
            }, f"{method} {path} {code}"
        if "requestBody" in operation:
            assert "422" in errors, f"{method} {path}"


def test_no_content_responses_have_no_body(document: dict[str, Any]) -> None:
    found = 0
    for _, _, operation in operations(document):
        for code in ("204", "304"):
            if code in operation["responses"]:
                found += 1
                assert "content" not in operation["responses"][code]
    assert found >= 4


def test_gateway_headers_follow_each_routes_policy(
    document: dict[str, Any], document_app: FastAPI
) -> None:
    policies: RoutePolicies = document_app.state.route_policies
    defined = set(document["components"]["headers"])
    for path, method, operation in operations(document):
        policy = policies.resolve(method.upper(), path)
        for code, response in operation["responses"].items():
            headers = response.get("headers", {})
            for header in headers.values():
                assert header["$ref"].removeprefix("#/components/headers/") in defined
            assert "X-Request-ID" in headers, f"{method} {path} {code}"
            assert (set(headers) >= RATE_LIMIT_HEADERS) is policy.rate_limited, f"{method} {path}"
        if policy.rate_limited:
            assert "Retry-After" in operation["responses"]["429"]["headers"]
        if policy.unit_of_work:
            assert "X-Quota-Reset" in operation["responses"]["429"]["headers"]
            names = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
            assert "X-LLM-API-KEY" in names, f"{method} {path}"
    # Exempt from the rate limit, as SPEC §3.2 lists them (login has its own throttle's 429).
    for method, path in (("get", "/health"), ("post", "/auth/login"), ("post", "/billing/webhook")):
        assert not policies.resolve(method.upper(), f"/api/v1{path}").rate_limited
    assert "429" not in op(document, "get", "/health")["responses"]


def test_headers_a_client_sends_or_reads_are_declared(document: dict[str, Any]) -> None:
    chat = op(document, "post", "/chat")
    assert "X-Demo-Mode" in chat["responses"]["200"]["headers"]
    quota = op(document, "get", "/quota/status")
    assert "X-LLM-API-KEY" in {p["name"] for p in quota["parameters"]}
    record = op(document, "get", "/storage/records/{record_id}")["responses"]["200"]
    assert "X-Checksum" in record["headers"]
    backup = op(document, "get", "/backup")["responses"]["200"]
    assert {"Last-Modified", "X-Checksum"} <= set(backup["headers"])
    me = op(document, "get", "/auth/me")
    assert "WWW-Authenticate" in me["responses"]["401"]["headers"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["DemoSessionId"] == {
        **schemes["DemoSessionId"],
        "type": "apiKey",
        "in": "header",
        "name": "X-Demo-Session-Id",
    }


def test_security_is_declared_as_it_really_is(document: dict[str, Any]) -> None:
    # Public routes take no credentials.
    for method, path in (
        ("get", "/health"),
        ("post", "/auth/register"),
        ("get", "/demo/accounts"),
        ("post", "/demo/sessions"),
        ("get", "/agents"),
    ):
        assert op(document, method, path)["security"] == [], f"{method} {path}"
    # The session id in the path is the credential: no bearer token.
    for method, path in (
        ("get", "/demo/sessions/{session_id}"),
        ("post", "/demo/sessions/{session_id}/extend"),
        ("get", "/demo/sessions/{session_id}/workspace"),
        ("delete", "/demo/sessions/{session_id}"),
    ):
        assert op(document, method, path)["security"] == [], f"{method} {path}"
    assert {"DemoSessionId": []} in op(document, "get", "/demo/sessions/current")["security"]
    # Units of work and the quota status serve any caller, anonymous ones included.
    for method, path in (("post", "/chat"), ("get", "/quota/status")):
        security = op(document, method, path)["security"]
        assert (
            {} in security and {"DemoSessionId": []} in security and {"HTTPBearer": []} in security
        )
    assert op(document, "get", "/auth/me")["security"] == [{"HTTPBearer": []}]


def test_the_webhook_documents_a_signed_stripe_event(document: dict[str, Any]) -> None:
    webhook = op(document, "post", "/billing/webhook")
    assert webhook["security"] == []
    assert "Stripe-Signature" in {p["name"] for p in webhook["parameters"]}
    body = webhook["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/StripeEvent"}
    event = document["components"]["schemas"]["StripeEvent"]
    assert {"id", "type", "created", "data"} <= set(event["required"])


def test_example_ids_differ_by_kind(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    examples = {
        name: schemas[name]["properties"]["id"]["examples"][0]
        for name in ("Project", "Task", "Checkpoint", "Note", "Comment")
    }
    assert len(set(examples.values())) == len(examples), examples


def test_the_description_links_the_asyncapi_document(document: dict[str, Any]) -> None:
    assert "(/asyncapi.json)" in document["info"]["description"]


# --- served through the app -------------------------------------------------------------
class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_use_only_assets_the_app_serves(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert "RateLimit-Limit" not in response.headers  # outside the gateway's limits
    parser = _Assets()
    parser.feed(response.text)
    assert parser.urls and all(url.startswith("/") for url in parser.urls), parser.urls
    assert not re.search(r"https?://", response.text)
    for url in parser.urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert "RateLimit-Limit" not in asset.headers
        assert asset.content


@pytest.mark.usefixtures("backend")
async def test_the_served_document_is_the_completed_one(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == app.openapi()


@pytest.mark.usefixtures("backend")
async def test_no_content_responses_carry_no_content_type(client: httpx.AsyncClient) -> None:
    account = await register(client)
    logout = await client.post("/api/v1/auth/logout", json={"refresh_token": account.refresh_token})
    assert logout.status_code == 204
    assert "content-type" not in logout.headers and logout.content == b""
    created = await client.post("/api/v1/demo/sessions", json={"demo_account_type": "freelancer"})
    ended = await client.delete(f"/api/v1/demo/sessions/{created.json()['session_id']}")
    assert ended.status_code == 204
    assert "content-type" not in ended.headers and ended.content == b""


def test_production_serves_no_documents(tmp_path: Path) -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:", tmp_path, ENV="prod")
    paths = {getattr(route, "path", None) for route in create_app(settings).routes}
    assert not paths & {"/docs", "/redoc", "/openapi.json", "/asyncapi.json"}
    assert "/static-offline-docs" not in paths
