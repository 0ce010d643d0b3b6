"""Prometheus metrics, served at `/metrics`.

Metrics live in prometheus-client's default registry. Under gunicorn, set
`PROMETHEUS_MULTIPROC_DIR` to an empty directory shared by the workers and
`/metrics` aggregates all of them. In production, protect the endpoint with
`METRICS_TOKEN` (sent as a bearer token) or keep it off the public network.
"""

from __future__ import annotations

import hmac
import os

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.errors import Forbidden

REQUESTS = Counter(
    "adiuva_http_requests_total", "HTTP requests by route and status", ["method", "route", "status"]
)
LATENCY = Histogram(
    "adiuva_http_request_duration_seconds",
    "Time to the end of the response, by route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REFUSALS = Counter(
    "adiuva_refusals_total",
    "Requests refused by the gateway (rate limit, quotas, concurrency, restrictions, credits)",
    ["reason"],
)
DEMO_FALLBACKS = Counter(
    "adiuva_demo_fallbacks_total", "Units of work answered by the demo fallback", ["reason"]
)
CREDITS_SPENT = Counter("adiuva_credits_spent_total", "Credits settled for metered LLM use")
ACTIVE_STREAMS = Gauge(
    "adiuva_active_websockets", "Open WebSocket connections", multiprocess_mode="livesum"
)
ACTIVE_UNITS = Gauge(
    "adiuva_active_units", "Units of work holding concurrency leases", multiprocess_mode="livesum"
)
LLM_LATENCY = Histogram(
    "adiuva_llm_upstream_seconds",
    "LLM upstream call duration (to the last token)",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60),
)
LLM_ERRORS = Counter("adiuva_llm_upstream_errors_total", "LLM upstream failures", ["model", "kind"])

router = APIRouter(include_in_schema=False)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    token = request.app.state.settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.encode()):
            raise Forbidden("Metrics need the metrics token.", error="metrics_forbidden")
    elif request.app.state.settings.is_prod:
        raise Forbidden(
            "Set METRICS_TOKEN to expose metrics in production.", error="metrics_forbidden"
        )
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
