from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from app.main import create_app
from tests.support.builders import client_for
from tests.support.settings import make_settings


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_requests_by_route_and_refusals(client):
    before = _sample(
        "adiuva_http_requests_total", method="GET", route="/api/v1/health", status="200"
    )
    await client.get("/api/v1/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "adiuva_http_request_duration_seconds_bucket" in response.text
    after = _sample(
        "adiuva_http_requests_total", method="GET", route="/api/v1/health", status="200"
    )
    assert after == before + 1

    refused_before = _sample("adiuva_refusals_total", reason="rate_limited")
    for _ in range(21):
        last = await client.get("/api/v1/quota/status")
    assert last.status_code == 429
    assert _sample("adiuva_refusals_total", reason="rate_limited") == refused_before + 1


async def test_unknown_paths_share_one_label(client):
    before = _sample("adiuva_http_requests_total", method="GET", route="unmatched", status="404")
    await client.get("/api/v1/no/such/thing/123")
    after = _sample("adiuva_http_requests_total", method="GET", route="unmatched", status="404")
    assert after == before + 1


@pytest.mark.parametrize("token", ["", "metrics-secret"])
async def test_metrics_are_protected_in_production(tmp_path, token):
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'm.db'}",
        tmp_path,
        ENV="prod",
        JWT_SECRET="x" * 40,
        METRICS_TOKEN=token,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        anonymous = await client.get("/metrics")
        assert anonymous.status_code == 403
        assert anonymous.json()["error"] == "metrics_forbidden"
        if token:
            allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert allowed.status_code == 200


def test_route_template_hides_ids():
    from app.gateway.request_context import route_template

    scope = {
        "path": "/api/v1/plugins/time-tracker/install",
        "path_params": {"plugin_id": "time-tracker"},
        "route": object(),
    }
    assert route_template(scope) == "/api/v1/plugins/{plugin_id}/install"
    assert route_template({"path": "/x"}) == "unmatched"
