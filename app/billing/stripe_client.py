"""The one place that talks to Stripe: live through the `stripe` package, or stubbed.

Without `STRIPE_SECRET_KEY` the gateway runs in stub mode: checkout returns a
stub URL, cancellation and transfers happen only locally. The `stripe` client
is synchronous, so every call runs in a worker thread.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlencode

import anyio
import stripe

from app.config import Settings
from app.errors import BadRequest, ServiceUnavailable

log = logging.getLogger(__name__)

# A webhook must be answered quickly; one retry covers a dropped connection.
MAX_NETWORK_RETRIES = 1


class WebhookNotConfigured(Exception):
    pass


class InvalidWebhook(Exception):
    pass


def _signed_at(signature: str) -> int:
    """The `t=` of a `Stripe-Signature` header that Stripe's library has verified."""
    for item in signature.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            return int(value)
    raise InvalidWebhook("signature has no timestamp")


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True, slots=True)
class TransferResult:
    id: str | None
    live: bool


class StripeGateway:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: stripe.StripeClient | None = None
        # Stub mode without a configured secret: the stub Checkout signs its events with
        # a secret of this process, which only it knows, so `make run` completes stub
        # purchases and no one else can forge an event.
        self._webhook_secret = settings.STRIPE_WEBHOOK_SECRET or (
            "" if settings.STRIPE_SECRET_KEY else f"whsec_{secrets.token_urlsafe(32)}"
        )
        if settings.STRIPE_SECRET_KEY:
            base_addresses: dict[str, str] = {}
            if settings.STRIPE_API_BASE:
                base_addresses["api"] = settings.STRIPE_API_BASE.rstrip("/")
            self._client = stripe.StripeClient(
                settings.STRIPE_SECRET_KEY,
                base_addresses=base_addresses,  # type: ignore[arg-type]
                max_network_retries=MAX_NETWORK_RETRIES,
            )

    @property
    def live(self) -> bool:
        return self._client is not None

    @property
    def mode(self) -> str:
        return "live" if self.live else "stub"

    def construct_event(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The verified event as plain JSON data; `InvalidWebhook` if the signature fails."""
        secret = self._webhook_secret
        if not secret:
            raise WebhookNotConfigured
        if not signature:
            raise InvalidWebhook("missing Stripe-Signature header")
        try:
            event = stripe.Webhook.construct_event(
                payload,
                signature,
                secret,
                tolerance=self._settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
            )
        except stripe.SignatureVerificationError as exc:
            raise InvalidWebhook("signature verification failed") from exc
        except (ValueError, RecursionError) as exc:
            raise InvalidWebhook("payload is not valid JSON") from exc
        # Stripe's check only refuses old signatures; one from the future is as suspect
        # (a replay prepared in advance, or a sender's clock far off).
        if _signed_at(signature) > time.time() + self._settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS:
            raise InvalidWebhook("signature timestamp is in the future")
        data = event.to_dict()
        if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
            raise InvalidWebhook("payload is not a Stripe event")
        return data

    def stub_signature(self, payload: bytes) -> str:
        """Stub mode: the `Stripe-Signature` Stripe would put on `payload`."""
        secret = self._webhook_secret
        if not secret:
            raise WebhookNotConfigured
        t = int(time.time())
        signed = f"{t}.".encode() + payload
        digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        return f"t={t},v1={digest}"

    async def create_checkout_session(
        self,
        *,
        price_id: str,
        quantity: int,
        tenant_id: uuid.UUID,
        metadata: dict[str, str],
        customer_id: str | None,
        customer_email: str,
        expires_at: int | None = None,
    ) -> CheckoutSession:
        if self._client is None:
            session_id = f"cs_stub_{uuid.uuid4().hex}"
            separator = "&" if "?" in self._settings.STRIPE_SUCCESS_URL else "?"
            query = urlencode({"stub_session": session_id})
            return CheckoutSession(
                session_id, f"{self._settings.STRIPE_SUCCESS_URL}{separator}{query}"
            )
        params: dict[str, Any] = {
            "mode": "subscription",
            "line_items": [{"price": price_id, "quantity": quantity}],
            "success_url": self._settings.STRIPE_SUCCESS_URL,
            "cancel_url": self._settings.STRIPE_CANCEL_URL,
            "client_reference_id": str(tenant_id),
            "metadata": metadata,
            # Copied onto the subscription, so its own events name the tenant too.
            "subscription_data": {"metadata": metadata},
        }
        if expires_at is not None:
            params["expires_at"] = expires_at
        if customer_id:
            params["customer"] = customer_id
        else:
            params["customer_email"] = customer_email
        session = await self._call(self._client.v1.checkout.sessions.create, params)
        if not session.url:
            raise ServiceUnavailable(
                "The payment provider returned no checkout URL.", error="payment_provider_error"
            )
        return CheckoutSession(session.id, session.url)

    async def cancel_subscription(self, subscription_id: str) -> None:
        if self._client is None:
            return
        try:
            await self._call(self._client.v1.subscriptions.cancel, subscription_id)
        except BadRequest:
            # Already canceled (or gone) at Stripe: the local cancellation still stands.
            log.warning("stripe subscription %s was already canceled", subscription_id)

    async def create_payment_checkout(
        self,
        *,
        amount_cents: int,
        currency: str,
        product_name: str,
        tenant_id: uuid.UUID,
        metadata: dict[str, str],
        customer_email: str,
        expires_at: int,
        stub_url: str,
    ) -> CheckoutSession:
        """A one-off payment Checkout (a paid plugin). In stub mode the session id is
        completed by `stub_url` + the id (the stub emits the signed webhook)."""
        if self._client is None:
            session_id = f"cs_stub_{uuid.uuid4().hex}"
            return CheckoutSession(session_id, f"{stub_url}/{session_id}")
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount_cents,
                        "product_data": {"name": product_name},
                    },
                }
            ],
            "success_url": self._settings.STRIPE_SUCCESS_URL,
            "cancel_url": self._settings.STRIPE_CANCEL_URL,
            "client_reference_id": str(tenant_id),
            "customer_email": customer_email,
            "metadata": metadata,
            # Copied onto the payment (and its charge): refunds and disputes name it too.
            "payment_intent_data": {"metadata": metadata},
            "expires_at": expires_at,
        }
        session = await self._call(self._client.v1.checkout.sessions.create, params)
        if not session.url:
            raise ServiceUnavailable(
                "The payment provider returned no checkout URL.", error="payment_provider_error"
            )
        return CheckoutSession(session.id, session.url)

    async def reverse_transfer(self, transfer_id: str, *, idempotency_key: str) -> None:
        """Take a paid developer share back (a refunded or disputed sale)."""
        if self._client is None:
            return
        await self._call(
            self._client.v1.transfers.reversals.create,
            transfer_id,
            {},
            {"idempotency_key": idempotency_key},
        )

    async def change_subscription_price(
        self,
        subscription_id: str,
        *,
        price_id: str,
        quantity: int,
        proration_behavior: str,
        metadata: dict[str, str],
    ) -> dict[str, Any] | None:
        """Move the subscription's one item to another price, in place; Stripe's updated
        subscription as plain data (None in stub mode)."""
        if self._client is None:
            return None
        current = await self._call(self._client.v1.subscriptions.retrieve, subscription_id)
        items = current.to_dict().get("items", {}).get("data") or []
        item: dict[str, Any] = {"price": price_id, "quantity": quantity}
        if items:
            # Naming the existing item replaces its price; without it Stripe would add one.
            item["id"] = items[0]["id"]
        updated = await self._call(
            self._client.v1.subscriptions.update,
            subscription_id,
            {
                "items": [item],
                "proration_behavior": proration_behavior,
                "cancel_at_period_end": False,
                "metadata": metadata,
            },
        )
        return updated.to_dict()

    async def set_cancel_at_period_end(self, subscription_id: str, value: bool) -> None:
        if self._client is None:
            return
        await self._call(
            self._client.v1.subscriptions.update,
            subscription_id,
            {"cancel_at_period_end": value},
        )

    async def create_portal_session(self, customer_id: str, return_url: str) -> str:
        """A Stripe customer portal link (a stub URL in stub mode)."""
        if self._client is None:
            separator = "&" if "?" in return_url else "?"
            return f"{return_url}{separator}{urlencode({'stub_portal': customer_id})}"
        session = await self._call(
            self._client.v1.billing_portal.sessions.create,
            {"customer": customer_id, "return_url": return_url},
        )
        return session.url

    async def create_transfer(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> TransferResult:
        if self._client is None:
            return TransferResult(None, live=False)
        transfer = await self._call(
            self._client.v1.transfers.create,
            {
                "amount": amount_cents,
                "currency": currency.lower(),
                "destination": destination,
                "metadata": metadata,
                # The group names the sale: a retry past the idempotency key's lifetime
                # finds the transfer that already went out (`find_transfer`).
                "transfer_group": idempotency_key,
            },
            {"idempotency_key": idempotency_key},
        )
        return TransferResult(transfer.id, live=True)

    async def find_transfer(self, transfer_group: str) -> str | None:
        """The id of a transfer already made for `transfer_group` (None: none, or stub)."""
        if self._client is None:
            return None
        found = await self._call(
            self._client.v1.transfers.list, {"transfer_group": transfer_group, "limit": 1}
        )
        data = found.data
        return data[0].id if data else None

    async def create_connect_account(self, *, user_id: uuid.UUID, email: str) -> str:
        """A Stripe Connect (Express) account for a developer; the same one on a retry."""
        if self._client is None:
            return f"acct_stub_{user_id.hex[:16]}"
        account = await self._call(
            self._client.v1.accounts.create,
            {
                "type": "express",
                "email": email,
                "capabilities": {"transfers": {"requested": True}},
                "metadata": {"user_id": str(user_id)},
            },
            {"idempotency_key": f"connect-account-{user_id}"},
        )
        return account.id

    async def create_account_link(self, account_id: str) -> str:
        """Stripe's hosted onboarding for the account (a stub URL in stub mode)."""
        return_url = self._settings.STRIPE_CONNECT_RETURN_URL
        if self._client is None:
            separator = "&" if "?" in return_url else "?"
            return f"{return_url}{separator}{urlencode({'stub_account': account_id})}"
        link = await self._call(
            self._client.v1.account_links.create,
            {
                "account": account_id,
                "refresh_url": self._settings.STRIPE_CONNECT_REFRESH_URL,
                "return_url": return_url,
                "type": "account_onboarding",
            },
        )
        return link.url

    async def _call(self, method: Any, *args: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(partial(method, *args))
        except stripe.InvalidRequestError as exc:
            log.warning("stripe rejected a request: %s", exc.user_message or exc.code)
            raise BadRequest(
                "The payment provider refused the request.", error="payment_provider_refused"
            ) from exc
        except stripe.StripeError as exc:
            log.error("stripe call failed: %s", type(exc).__name__)
            raise ServiceUnavailable(
                "The payment provider is unavailable; try again later.",
                error="payment_provider_unavailable",
            ) from exc
