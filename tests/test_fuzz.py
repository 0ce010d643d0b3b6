"""Property-based fuzzing of every operation in the OpenAPI document (schemathesis).

In-process against the ASGI app on a migrated SQLite database, signed in as an
admin on the power tier so every operation is reachable. Checks: no 5xx, status
codes, content types, headers and bodies as the document declares them, and the
one error shape on every 4xx. The default run is a fast profile
(`FUZZ_EXAMPLES`, 15 cases an operation); `make fuzz` runs a deeper one.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from tests.support.databases import SQLiteTemplate
from tests.support.settings import make_settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))


def error_shape(ctx, response, case) -> bool | None:
    """Every error, whatever the route, comes as {"error", "message", "request_id"}."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict), f"{case.method} {case.path}: error body is not an object"
    missing = {"error", "message", "request_id"} - set(body)
    assert not missing, f"{case.method} {case.path} {response.status_code}: missing {missing}"
    assert [body["request_id"]] == response.headers.get("x-request-id")
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    error_shape,
]


def _build_app():
    """Built at collection: schemathesis turns the OpenAPI document into test cases."""
    directory = Path(tempfile.mkdtemp(prefix="adiuva-fuzz-"))
    url = SQLiteTemplate(directory).clone(directory)
    app = create_app(
        make_settings(
            url,
            directory / "data",
            RATE_LIMIT_FREE_PER_MINUTE=1_000_000,
            RATE_LIMIT_POWER_PER_MINUTE=1_000_000,
            RATE_LIMIT_DAILY_PAID=1_000_000,
            RATE_LIMIT_DAILY_PER_USER=1_000_000,
            RATE_LIMIT_DAILY_PER_IP=1_000_000,
            MAX_CONCURRENT_POWER=1000,
            MAX_CONCURRENT_TASK_TREES=1000,
            MAX_CONCURRENT_TASK_TREES_PER_USER=1000,
            CREDIT_MONTHLY_GRANT_POWER=100_000_000,
            DEMO_CLEANUP_INTERVAL_SECONDS=0,
            STRIPE_WEBHOOK_SECRET="whsec_fuzzing_secret",
        )
    )
    app.state.fuzz_db = url.removeprefix("sqlite+aiosqlite:///")
    return app


fuzz_app = _build_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


@pytest.fixture(scope="module")
def auth_headers() -> dict[str, str]:
    from schemathesis.python import asgi

    with asgi.get_client(fuzz_app) as client:
        response = client.post(
            "/api/v1/auth/register",
            json={"email": "fuzzer@example.com", "password": "fuzzing-password"},
        )
        assert response.status_code == 201, response.text
        token = response.json()["access_token"]
    with sqlite3.connect(fuzz_app.state.fuzz_db) as connection:
        connection.execute("UPDATE users SET is_admin = 1")
        connection.execute("UPDATE subscriptions SET tier = 'power'")
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_behaves_as_documented(case, auth_headers):
    case.call_and_validate(headers=auth_headers, checks=CHECKS)
