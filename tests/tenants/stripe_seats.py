"""A local stand-in for the Stripe calls seat billing makes: read a subscription, set an
item's quantity. Real HTTP, through the `stripe` library, as in tests/support/billing.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class SeatStandIn:
    url: str = ""
    quantities: dict[str, int] = field(default_factory=dict)  # item id -> quantity
    items: dict[str, str] = field(default_factory=dict)  # subscription id -> item id
    updates: list[dict[str, str]] = field(default_factory=list)
    failures_left: int = 0  # answer the next calls with a 500

    def subscription(self, subscription_id: str, quantity: int = 1) -> None:
        item = f"si_{subscription_id}"
        self.items[subscription_id] = item
        self.quantities[item] = quantity

    def answer(self, method: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.failures_left:
            self.failures_left -= 1
            return 500, {"error": {"type": "api_error", "message": "stand-in failure"}}
        parts = path.strip("/").split("/")
        if method == "GET" and parts[:2] == ["v1", "subscriptions"] and parts[2] in self.items:
            item = self.items[parts[2]]
            return 200, {
                "id": parts[2],
                "object": "subscription",
                "items": {
                    "object": "list",
                    "data": [
                        {
                            "id": item,
                            "object": "subscription_item",
                            "quantity": self.quantities[item],
                        }
                    ],
                },
            }
        if (
            method == "POST"
            and parts[:2] == ["v1", "subscription_items"]
            and parts[2] in self.quantities
        ):
            self.updates.append(form)
            self.quantities[parts[2]] = int(form["quantity"])
            return 200, {
                "id": parts[2],
                "object": "subscription_item",
                "quantity": int(form["quantity"]),
            }
        return 404, {"error": {"type": "invalid_request_error", "message": "unknown route"}}


@contextmanager
def seat_stand_in() -> Iterator[SeatStandIn]:
    stand_in = SeatStandIn()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            path, _, query = self.path.partition("?")
            form = dict(parse_qsl(body or query, keep_blank_values=True))
            with lock:
                status, payload = stand_in.answer(self.command, path, form)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _handle

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
