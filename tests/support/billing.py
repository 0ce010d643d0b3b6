"""Billing helpers for tests: a tenant's tier, signed Stripe webhooks, a Stripe stand-in."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx

WEBHOOK_SECRET = "whsec_test_0123456789abcdef"


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header by Stripe's scheme: HMAC-SHA256 of `{t}.{payload}`."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def stripe_event(
    event_type: str, obj: dict[str, Any], *, created: int | None = None, event_id: str | None = None
) -> str:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "api_version": "2025-01-27.acacia",
            "created": int(time.time()) if created is None else created,
            "livemode": False,
            "type": event_type,
            "data": {"object": obj},
        }
    )


def checkout_completed(
    tenant_id: uuid.UUID,
    user_id: str,
    tier: str,
    *,
    subscription: str = "sub_1",
    customer: str = "cus_1",
    created: int | None = None,
    event_id: str | None = None,
) -> str:
    return stripe_event(
        "checkout.session.completed",
        {
            "id": f"cs_test_{uuid.uuid4().hex[:8]}",
            "object": "checkout.session",
            "mode": "subscription",
            "client_reference_id": str(tenant_id),
            "customer": customer,
            "subscription": subscription,
            "metadata": {"tenant_id": str(tenant_id), "user_id": user_id, "tier": tier},
        },
        created=created,
        event_id=event_id,
    )


async def post_webhook(
    client: httpx.AsyncClient, payload: str, signature: str | None = "sign"
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        signature = sign(payload)
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return await client.post("/api/v1/billing/webhook", content=payload, headers=headers)


@dataclass
class RecordedRequest:
    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class StripeStandIn:
    """A local HTTP server answering the few Stripe API calls the app makes."""

    url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    fail_with: int | None = None
    # Checkout session id -> the purchase id in its metadata (payment mode).
    sessions: dict[str, str] = field(default_factory=dict)
    # Transfers made, by idempotency key (a repeated key answers the same transfer).
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def calls(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]


def _answer(
    stand_in: StripeStandIn,
    method: str,
    path: str,
    form: dict[str, str],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = headers or {}
    if method == "POST" and path == "/v1/checkout/sessions":
        session_id = f"cs_test_{uuid.uuid4().hex[:12]}"
        if "metadata[purchase_id]" in form:
            stand_in.sessions[session_id] = form["metadata[purchase_id]"]
        return 200, {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "client_reference_id": form.get("client_reference_id"),
        }
    if path.startswith("/v1/subscriptions/") and method in ("GET", "POST"):
        subscription_id = path.rsplit("/", 1)[1]
        return 200, {
            "id": subscription_id,
            "object": "subscription",
            "status": "active",
            "cancel_at_period_end": form.get("cancel_at_period_end") == "true",
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": f"si_{subscription_id}",
                        "object": "subscription_item",
                        "price": {"id": form.get("items[0][price]", "price_current")},
                        "quantity": int(form.get("items[0][quantity]", "1")),
                        "current_period_end": int(time.time()) + 30 * 86400,
                    }
                ],
            },
        }
    if method == "POST" and path == "/v1/billing_portal/sessions":
        return 200, {
            "id": f"bps_{uuid.uuid4().hex[:12]}",
            "object": "billing_portal.session",
            "customer": form.get("customer"),
            "url": f"https://billing.stripe.test/p/session/{uuid.uuid4().hex[:12]}",
        }
    if method == "DELETE" and path.startswith("/v1/subscriptions/"):
        return 200, {"id": path.rsplit("/", 1)[1], "object": "subscription", "status": "canceled"}
    if method == "POST" and path.startswith("/v1/transfers/") and path.endswith("/reversals"):
        return 200, {
            "id": f"trr_{uuid.uuid4().hex[:12]}",
            "object": "transfer_reversal",
            "transfer": path.split("/")[3],
        }
    if method == "POST" and path == "/v1/transfers":
        key = headers.get("Idempotency-Key") or uuid.uuid4().hex
        if key not in stand_in.transfers:
            stand_in.transfers[key] = {
                "id": f"tr_{uuid.uuid4().hex[:12]}",
                "object": "transfer",
                "amount": int(form["amount"]),
                "currency": form["currency"],
                "destination": form["destination"],
                "transfer_group": form.get("transfer_group"),
            }
        return 200, stand_in.transfers[key]
    if method == "GET" and path == "/v1/transfers":
        group = form.get("transfer_group")
        data = [t for t in stand_in.transfers.values() if t["transfer_group"] == group]
        return 200, {"object": "list", "data": data[:1], "has_more": False, "url": path}
    if method == "POST" and path == "/v1/accounts":
        return 200, {
            "id": f"acct_{uuid.uuid4().hex[:16]}",
            "object": "account",
            "type": form.get("type"),
            "payouts_enabled": False,
        }
    if method == "POST" and path == "/v1/account_links":
        return 200, {
            "object": "account_link",
            "url": f"https://connect.stripe.test/setup/e/{form['account']}/{uuid.uuid4().hex[:8]}",
        }
    return 404, {"error": {"type": "invalid_request_error", "message": "unknown route"}}


@contextmanager
def stripe_stand_in() -> Iterator[StripeStandIn]:
    stand_in = StripeStandIn(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            path, _, query = self.path.partition("?")
            form = dict(parse_qsl(body or query, keep_blank_values=True))
            stand_in.requests.append(
                RecordedRequest(self.command, path, form, {k: v for k, v in self.headers.items()})
            )
            if stand_in.fail_with is not None:
                status, payload = (
                    stand_in.fail_with,
                    {"error": {"type": "api_error", "message": "stand-in failure"}},
                )
            else:
                status, payload = _answer(
                    stand_in, self.command, path, form, dict(self.headers.items())
                )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
