"""Property-based fuzzing of every operation in the OpenAPI document (schemathesis).

In-process against the ASGI app on a migrated database — SQLite and PostgreSQL,
like every database test — signed in as an admin on the power tier so every
operation is reachable. Besides what the document allows, each case may carry a
hostile value in one place: a NUL character or an unpaired surrogate in a
string, a number far outside 64 bits, a date at the edge of the calendar.
Checks: no 5xx, status codes, content types, headers and bodies as the document
declares them, and the one error shape on every 4xx. The default run is a fast
profile (`FUZZ_EXAMPLES`, 8 cases an operation); `make fuzz` runs a deeper one.
"""

from __future__ import annotations

import asyncio
import copy
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.main import create_app
from tests.support.settings import make_settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))


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

# --- hostile values ------------------------------------------------------------------------
BAD_CHARACTERS = ["\x00", "\ud800", "\udbff", "\udfff"]
EXTREME_NUMBERS = [2**63, -(2**63) - 1, 2**70, -(2**70), 10**30, 1e308, -1e308, -1, 0]
EXTREME_DATES = ["9999-12-31", "0001-01-01", "9999-12", "9999", "0000", "0000-00-00", "1969-12"]


def _with_bad_character(surrogates: bool) -> st.SearchStrategy[str]:
    bad = BAD_CHARACTERS if surrogates else BAD_CHARACTERS[:1]
    return st.builds(
        lambda head, char, tail: head + char + tail,
        st.text(max_size=8),
        st.sampled_from(bad),
        st.text(max_size=8),
    )


def hostile(surrogates: bool) -> st.SearchStrategy[Any]:
    # Query strings and paths cannot carry a lone surrogate: no client can encode one.
    return st.one_of(
        _with_bad_character(surrogates),
        st.sampled_from(EXTREME_NUMBERS),
        st.sampled_from(EXTREME_DATES),
    )


def _leaves(value: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _leaves(child, (*path, index))
    elif path:
        yield path


def _replace(value: Any, path: tuple, new: Any) -> None:
    for part in path[:-1]:
        value = value[part]
    value[path[-1]] = new


def poisoned(case):
    """The case as generated, or with one hostile value in place of a generated one."""
    places = []
    for attribute, surrogates in (("query", False), ("path_parameters", False), ("body", True)):
        container = getattr(case, attribute, None)
        if isinstance(container, dict | list):
            places += [(attribute, path, surrogates) for path in _leaves(container)]
    if not places:
        return st.just(case)

    @st.composite
    def with_one_hostile_value(draw):
        attribute, path, surrogates = draw(st.sampled_from(places))
        changed = copy.deepcopy(getattr(case, attribute))
        _replace(changed, path, draw(hostile(surrogates)))
        # Each example draws a fresh case, so changing this one changes no other. Its
        # metadata (which schemathesis would revalidate) says how it was generated, no
        # longer true, and its validators cannot read a lone surrogate: dropped.
        setattr(case, attribute, changed)
        case._meta = None
        return case

    return st.one_of(st.just(case), with_one_hostile_value())


# --- the application, once per backend ------------------------------------------------------
LIMITS = {
    "RATE_LIMIT_FREE_PER_MINUTE": 1_000_000,
    "RATE_LIMIT_POWER_PER_MINUTE": 1_000_000,
    "RATE_LIMIT_DAILY_PAID": 1_000_000,
    "RATE_LIMIT_DAILY_PER_USER": 1_000_000,
    "RATE_LIMIT_DAILY_PER_IP": 1_000_000,
    "MAX_CONCURRENT_POWER": 1000,
    "MAX_CONCURRENT_TASK_TREES": 1000,
    "MAX_CONCURRENT_TASK_TREES_PER_USER": 1000,
    "CREDIT_MONTHLY_GRANT_POWER": 100_000_000,
    "DEMO_CLEANUP_INTERVAL_SECONDS": 0,
    "STRIPE_WEBHOOK_SECRET": "whsec_fuzzing_secret",
}


async def _promote(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE users SET is_admin = true"))
            await connection.execute(text("UPDATE subscriptions SET tier = 'power'"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def fuzz_app(database_template, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    url = database_template.clone(directory)
    app = create_app(make_settings(url, directory / "data", **LIMITS))
    app.state.fuzz_database_url = url
    yield app
    asgi.shutdown_lifespans()
    database_template.drop(url)


@pytest.fixture(scope="module")
def auth_headers(fuzz_app: FastAPI) -> dict[str, str]:
    with asgi.get_client(fuzz_app) as client:
        response = client.post(
            "/api/v1/auth/register",
            json={"email": "fuzzer@example.com", "password": "fuzzing-password"},
        )
        assert response.status_code == 201, response.text
        token = response.json()["access_token"]
    asyncio.run(_promote(fuzz_app.state.fuzz_database_url))
    return {"Authorization": f"Bearer {token}"}


def _document() -> dict[str, Any]:
    """The OpenAPI document, read at collection from an app that never starts."""
    directory = Path(tempfile.mkdtemp(prefix="adiuva-openapi-"))
    return create_app(make_settings("sqlite+aiosqlite://", directory / "data")).openapi()


# Cases come from the document; each is sent to the app of the backend under test.
schema = schemathesis.openapi.from_dict(_document())


@schema.hook
def flatmap_case(context, case):
    return poisoned(case)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_behaves_as_documented(case, fuzz_app, auth_headers):
    case.call_and_validate(app=fuzz_app, headers=auth_headers, checks=CHECKS)
