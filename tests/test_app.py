"""The app shell: health, error shape everywhere, request ids, settings guards."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from pydantic import ValidationError

from app import __version__
from app.config import DEFAULT_JWT_SECRET, Settings
from app.main import create_app
from tests.support.settings import make_settings


async def test_health(client):
    response = await client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


@pytest.mark.usefixtures("backend")
async def test_readiness_checks_the_database(client):
    response = await client.get("/api/v1/health/ready")
    assert response.status_code == 200


async def test_unknown_route_has_the_error_shape(client):
    response = await client.get("/api/v1/nope", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "message": "No such resource or route.",
        "request_id": "abc-123",
    }
    assert response.headers["x-request-id"] == "abc-123"


async def test_wrong_method_has_the_error_shape(client):
    response = await client.delete("/api/v1/health")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


async def test_malformed_json_is_422_with_shape(client):
    response = await client.post(
        "/api/v1/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_request_id_generated_and_unsafe_ids_replaced(client):
    generated = await client.get("/api/v1/health")
    assert len(generated.headers["x-request-id"]) == 32
    unsafe = await client.get("/api/v1/health", headers={"X-Request-ID": "evil\nheader"})
    assert unsafe.headers["x-request-id"] != "evil\nheader"


async def test_unhandled_error_is_500_with_shape_and_logged(settings, caplog):
    app = create_app(settings)

    @app.get("/api/v1/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        with caplog.at_level(logging.ERROR):
            response = await client.get("/api/v1/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "An unexpected error occurred. It has been logged.",
        "request_id": "req-500",
    }
    assert "kaboom" not in response.text
    assert any(r.request_id == "req-500" for r in caplog.records if r.levelno >= logging.ERROR)


def test_logs_are_json_with_request_id(capsys):
    from app.log import configure_logging, reset_request_id, set_request_id

    configure_logging("INFO")
    token = set_request_id("rid-1")
    try:
        logging.getLogger("app.test").info("hello", extra={"answer": 42})
    finally:
        reset_request_id(token)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["message"] == "hello"
    assert record["request_id"] == "rid-1"
    assert record["answer"] == 42
    assert record["level"] == "INFO"


def test_prod_refuses_the_default_jwt_secret():
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(_env_file=None, ENV="prod", JWT_SECRET=DEFAULT_JWT_SECRET)
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(_env_file=None, ENV="prod", JWT_SECRET="short")


def test_prod_hides_the_docs(tmp_path):
    settings = make_settings("sqlite+aiosqlite:///:memory:", tmp_path, ENV="prod")
    paths = {getattr(route, "path", None) for route in create_app(settings).routes}
    assert "/docs" not in paths and "/openapi.json" not in paths
    dev_paths = {
        getattr(route, "path", None)
        for route in create_app(make_settings("sqlite+aiosqlite:///:memory:", tmp_path)).routes
    }
    assert "/docs" in dev_paths


def test_list_settings_accept_commas(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8")
    settings = Settings(_env_file=None)
    assert settings.CORS_ORIGINS == ["http://a.example", "http://b.example"]
    assert settings.TRUSTED_PROXIES == ["10.0.0.0/8"]


def test_default_database_is_a_sqlite_file_under_data_dir(tmp_path):
    settings = Settings(_env_file=None, DATA_DIR=tmp_path)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/adiuva.db"


def test_env_example_lists_every_setting():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    listed = {line.split("=", 1)[0] for line in text.splitlines() if line and line[0].isupper()}
    assert listed == set(Settings.model_fields)
