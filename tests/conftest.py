"""Every database test runs twice: on SQLite and on a real PostgreSQL server.

The PostgreSQL server is started once per session from the local binaries. On a
machine without them the PostgreSQL half fails loudly; `--no-postgres` turns
that into an explicit, reported skip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from tests.support.billing import StripeStandIn
from tests.support.databases import PostgresTemplate, SQLiteTemplate
from tests.support.postgres import PostgresServer, find_pg_ctl, start_postgres
from tests.support.settings import make_settings

BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-postgres",
        action="store_true",
        help="skip (and report) the PostgreSQL half of the suite",
    )


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    if request.config.getoption("--no-postgres"):
        pytest.skip("PostgreSQL half disabled with --no-postgres")
    pg_ctl = find_pg_ctl()
    if pg_ctl is None:
        pytest.fail(
            "PostgreSQL server binaries (pg_ctl) not found: install the `postgresql` package "
            "or set PG_CTL. Use --no-postgres to run only the SQLite half.",
            pytrace=False,
        )
    server = start_postgres(pg_ctl)
    yield server
    server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def database_template(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> SQLiteTemplate | PostgresTemplate:
    if backend == "sqlite":
        return SQLiteTemplate(tmp_path_factory.mktemp("sqlite-template"))
    return PostgresTemplate(request.getfixturevalue("postgres_server"))


@pytest.fixture
def database_url(
    database_template: SQLiteTemplate | PostgresTemplate, tmp_path: Path
) -> Iterator[str]:
    url = database_template.clone(tmp_path)
    yield url
    database_template.drop(url)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override in a test module to change the app's settings."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict) -> Settings:
    return make_settings(database_url, tmp_path / "data", **settings_overrides)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server (installed from Debian's packages if missing)."""
    from tests.support.redis import start_redis

    executor = start_redis()
    yield f"redis://{executor.host}:{executor.port}/0"
    executor.stop()


@pytest.fixture
def stand_in() -> Iterator[StripeStandIn]:
    """A local HTTP stand-in for Stripe's API: live-mode calls go through the real client."""
    from tests.support.billing import stripe_stand_in

    with stripe_stand_in() as server:
        yield server
