"""Subscriptions: checkout, the Stripe webhook, cancellation; one subscription per tenant."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import Principal
from app.auth.verification import VerifiedFeature, require_verified_email
from app.billing.repository import ProcessedEventRepository, SubscriptionRepository
from app.billing.schemas import CheckoutResponse, PortalResponse, SubscriptionRead, WebhookAck
from app.billing.stripe_client import InvalidWebhook, StripeGateway, WebhookNotConfigured
from app.billing.tiers import TIER_ORDER, TierTable
from app.config import Settings
from app.credits.repository import top_up_to_grant
from app.credits.service import current_period
from app.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable
from app.kit.text import find_bad_json
from app.marketplace.payouts import Payouts
from app.marketplace.service import MarketplaceService
from app.models import BillingTier, MembershipRole, Subscription, SubscriptionStatus
from app.models.marketplace import PurchaseStatus
from app.tenants.repository import TenantRepository

log = logging.getLogger(__name__)

BILLING_ROLES = frozenset({MembershipRole.OWNER, MembershipRole.ADMIN})

STRIPE_STATUSES = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.TRIALING,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "paused": SubscriptionStatus.PAST_DUE,
    "incomplete": SubscriptionStatus.INCOMPLETE,
    "incomplete_expired": SubscriptionStatus.CANCELED,
    "canceled": SubscriptionStatus.CANCELED,
}

# A subscription Stripe still bills: a plan change updates it, never starts another one.
LIVE_STATUSES = frozenset(
    {SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE}
)

# Stripe's shortest Checkout lifetime is 30 minutes; the tenant's claim on its one open
# Checkout ends when the session does.
CHECKOUT_LIFETIME = timedelta(minutes=31)

EventHandler = Callable[[dict[str, Any], int], Awaitable[None]]

# The columns that hold Stripe ids are this long; Stripe's own ids are far shorter.
MAX_STRIPE_ID_LENGTH = 255


def price_ids(settings: Settings) -> dict[BillingTier, str]:
    return {
        BillingTier.PRO: settings.STRIPE_PRICE_PRO,
        BillingTier.POWER: settings.STRIPE_PRICE_POWER,
        BillingTier.TEAM: settings.STRIPE_PRICE_TEAM,
    }


def _invalid_webhook(reason: str) -> BadRequest:
    return BadRequest(f"Invalid Stripe webhook: {reason}.", error="invalid_webhook")


def _stripe_id(value: Any) -> str | None:
    """An id field that Stripe sends either as a string or as an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        return None
    if len(value) > MAX_STRIPE_ID_LENGTH:
        raise _invalid_webhook(f"an id is longer than {MAX_STRIPE_ID_LENGTH} characters")
    return value


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _tier(value: Any) -> BillingTier | None:
    try:
        return BillingTier(value)
    except ValueError:
        return None


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise _invalid_webhook("a timestamp is out of range") from exc
    return None


def _created(event: dict[str, Any]) -> int:
    """The event's `created`, never later than now.

    Every change applies only over older ones: an event from the future would make
    every real event after it look stale and freeze the subscription for good.
    """
    created = event.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        return 0
    return min(created, int(time.time()))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class BillingService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        stripe: StripeGateway,
        tiers: TierTable,
        *,
        is_sqlite: bool,
    ) -> None:
        self.session = session
        self.settings = settings
        self.stripe = stripe
        self.tiers = tiers
        self.is_sqlite = is_sqlite
        self.subscriptions = SubscriptionRepository(session)
        self.tenants = TenantRepository(session)
        self._prices = price_ids(settings)
        self._tier_by_price = {price: tier for tier, price in self._prices.items()}
        self._handlers: dict[str, EventHandler] = {
            "checkout.session.completed": self._checkout_completed,
            "customer.subscription.updated": self._subscription_updated,
            "customer.subscription.deleted": self._subscription_deleted,
            "invoice.payment_failed": self._payment_failed,
            "checkout.session.async_payment_succeeded": self._checkout_completed,
            "checkout.session.expired": self._checkout_expired,
            "charge.refunded": self._charge_refunded,
            "charge.dispute.created": self._charge_disputed,
            "account.updated": self._account_updated,
        }

    # --- the caller's subscription ---------------------------------------------------

    async def get_subscription(self, principal: Principal) -> SubscriptionRead:
        tenant_id = principal.tenant.id
        row = await self.subscriptions.for_tenant(tenant_id)
        seats = await self.tenants.seat_count(tenant_id)
        tier = row.tier if row else BillingTier.FREE
        return SubscriptionRead(
            tenant_id=tenant_id,
            tier=tier,
            status=row.status if row else SubscriptionStatus.ACTIVE,
            seats=seats,
            rate_limit_per_minute=self.tiers.rate_per_minute(tier, seats),
            features=sorted(feature.value for feature in self.tiers[tier].features),
            cancel_at_period_end=bool(row and row.cancel_at_period_end),
            current_period_end=row.current_period_end if row else None,
            stripe_customer_id=row.stripe_customer_id if row else None,
            stripe_subscription_id=row.stripe_subscription_id if row else None,
            mode=self.stripe.mode,  # type: ignore[arg-type]
        )

    async def checkout(self, principal: Principal, tier: BillingTier) -> CheckoutResponse:
        """A Checkout for a workspace without a live subscription; otherwise the live one
        changes price in place (never a second subscription)."""
        self._require_billing_role(principal)
        await require_verified_email(
            self.session,
            self.settings.VERIFIED_EMAIL_REQUIRED_FOR,
            principal.user.id,
            VerifiedFeature.CHECKOUT,
        )
        tenant_id = principal.tenant.id
        row = await self.subscriptions.for_tenant(tenant_id)
        if row is not None and row.stripe_subscription_id and row.status in LIVE_STATUSES:
            return await self._change_plan(principal, row, tier)
        await self.subscriptions.ensure(tenant_id, is_sqlite=self.is_sqlite)
        claim = f"claim_{uuid.uuid4().hex}"
        expires_at = datetime.now(UTC) + CHECKOUT_LIFETIME
        if not await self.subscriptions.claim_checkout(tenant_id, claim, tier.value, expires_at):
            return await self._open_checkout(tenant_id, tier)
        session = await self.stripe.create_checkout_session(
            price_id=self._prices[tier],
            quantity=await self._quantity(tenant_id, tier),
            tenant_id=tenant_id,
            metadata=self._metadata(principal, tier),
            customer_id=row.stripe_customer_id if row else None,
            customer_email=principal.user.email,
            expires_at=int(expires_at.timestamp()),
        )
        await self.subscriptions.record_checkout(tenant_id, claim, session.id, session.url)
        log.info("checkout session %s for tenant %s (%s)", session.id, tenant_id, tier)
        return CheckoutResponse(
            action="checkout",
            checkout_url=session.url,
            session_id=session.id,
            mode=self.stripe.mode,  # type: ignore[arg-type]
        )

    async def _open_checkout(self, tenant_id: uuid.UUID, tier: BillingTier) -> CheckoutResponse:
        """The claim went to another checkout: its session again if it is for this tier."""
        row = await self.session.scalar(
            select(Subscription)
            .where(Subscription.tenant_id == tenant_id)
            .execution_options(populate_existing=True)
        )
        if row is not None and row.stripe_subscription_id and row.status in LIVE_STATUSES:
            raise Conflict(
                "A subscription for this workspace was just started; change the plan again "
                "once it shows in the subscription.",
                error="checkout_in_progress",
            )
        if (
            row is not None
            and row.pending_checkout_tier == tier.value
            and row.pending_checkout_url
            and row.pending_checkout_id
        ):
            return CheckoutResponse(
                action="checkout",
                checkout_url=row.pending_checkout_url,
                session_id=row.pending_checkout_id,
                mode=self.stripe.mode,  # type: ignore[arg-type]
            )
        until = row.pending_checkout_expires_at if row is not None else None
        raise Conflict(
            f"A checkout for the {row.pending_checkout_tier if row else tier} tier is already "
            "open for this workspace"
            + (f" until {until.astimezone(UTC):%H:%M} UTC" if until else "")
            + "; complete it, or start another once it has expired.",
            error="checkout_in_progress",
        )

    async def _change_plan(
        self, principal: Principal, row: Subscription, tier: BillingTier
    ) -> CheckoutResponse:
        tenant_id = principal.tenant.id
        assert row.stripe_subscription_id is not None
        if row.tier == tier:
            if not row.cancel_at_period_end:
                raise Conflict(
                    f"This workspace is already on the {tier} tier.", error="already_subscribed"
                )
            await self.stripe.set_cancel_at_period_end(row.stripe_subscription_id, False)
            await self.subscriptions.set_cancel_at_period_end(tenant_id, False)
            await self.session.refresh(row)
            log.info("tenant %s withdrew its cancellation", tenant_id)
            return await self._changed(principal, "resumed")
        upgrade = TIER_ORDER.index(tier) > TIER_ORDER.index(row.tier)
        # An upgrade is invoiced now for the rest of the period; a downgrade leaves its
        # unused time as a credit on the next invoice. Either way it takes effect at once.
        updated = await self.stripe.change_subscription_price(
            row.stripe_subscription_id,
            price_id=self._prices[tier],
            quantity=await self._quantity(tenant_id, tier),
            proration_behavior="always_invoice" if upgrade else "create_prorations",
            metadata=self._metadata(principal, tier),
        )
        values: dict[str, Any] = {"tier": tier, "cancel_at_period_end": False}
        if updated is not None:
            status = STRIPE_STATUSES.get(str(updated.get("status")))
            if status is not None and status != SubscriptionStatus.CANCELED:
                values["status"] = status
            item = _dict((_dict(updated.get("items")).get("data") or [{}])[0])
            period_end = _timestamp(
                updated.get("current_period_end") or item.get("current_period_end")
            )
            if period_end is not None:
                values["current_period_end"] = period_end
        now = max(int(time.time()), row.stripe_event_created or 0)
        old_tier = row.tier
        await self.subscriptions.cancel_locally(tenant_id, values, now)
        await self._follow_plan(tenant_id, old_tier, tier, principal.user.id)
        await self.session.refresh(row)
        log.info("tenant %s changed plan %s -> %s in place", tenant_id, old_tier, tier)
        return await self._changed(principal, "upgraded" if upgrade else "downgraded")

    async def _changed(self, principal: Principal, action: str) -> CheckoutResponse:
        return CheckoutResponse(
            action=action,  # type: ignore[arg-type]
            checkout_url=None,
            session_id=None,
            mode=self.stripe.mode,  # type: ignore[arg-type]
            subscription=await self.get_subscription(principal),
        )

    async def _quantity(self, tenant_id: uuid.UUID, tier: BillingTier) -> int:
        # The team tier is priced per seat: every member of the tenant is one.
        if tier != BillingTier.TEAM:
            return 1
        return max(1, await self.tenants.seat_count(tenant_id))

    @staticmethod
    def _metadata(principal: Principal, tier: BillingTier) -> dict[str, str]:
        return {
            "tenant_id": str(principal.tenant.id),
            "user_id": str(principal.user.id),
            "tier": tier.value,
        }

    async def _follow_plan(
        self,
        tenant_id: uuid.UUID,
        old_tier: BillingTier | None,
        new_tier: BillingTier,
        user_id: uuid.UUID | None = None,
    ) -> None:
        """Credits follow the plan: a move to a tier with a larger monthly grant tops the
        balance up by the difference for the rest of the period (once); a move down
        takes nothing back."""
        if old_tier == new_tier:
            return
        added = await top_up_to_grant(
            await self.session.connection(),
            tenant_id,
            self.tiers[new_tier].monthly_credits,
            current_period(),
            is_sqlite=self.is_sqlite,
            user_id=user_id,
        )
        if added:
            log.info("tenant %s: %d credits added for its move to %s", tenant_id, added, new_tier)

    async def portal(self, principal: Principal) -> PortalResponse:
        self._require_billing_role(principal)
        row = await self.subscriptions.for_tenant(principal.tenant.id)
        if row is None or not row.stripe_customer_id:
            raise Conflict(
                "This workspace has no billing account yet; subscribe to a paid tier first.",
                error="no_billing_account",
            )
        url = await self.stripe.create_portal_session(
            row.stripe_customer_id, self.settings.STRIPE_PORTAL_RETURN_URL
        )
        return PortalResponse(url=url, mode=self.stripe.mode)  # type: ignore[arg-type]

    async def cancel(
        self, principal: Principal, *, at_period_end: bool = False
    ) -> SubscriptionRead:
        self._require_billing_role(principal)
        tenant_id = principal.tenant.id
        row = await self.subscriptions.for_tenant(tenant_id)
        if row is None or (row.tier == BillingTier.FREE and not row.stripe_subscription_id):
            # Nothing to cancel: answering with the current state keeps DELETE idempotent.
            return await self.get_subscription(principal)
        if at_period_end and row.stripe_subscription_id and row.status in LIVE_STATUSES:
            # The tier holds until Stripe ends the subscription (customer.subscription.deleted).
            await self.stripe.set_cancel_at_period_end(row.stripe_subscription_id, True)
            await self.subscriptions.set_cancel_at_period_end(tenant_id, True)
            await self.session.refresh(row)
            log.info("subscription of tenant %s cancels at the period end", tenant_id)
            return await self.get_subscription(principal)
        if row.stripe_subscription_id:
            # Stripe first: if it refuses, nothing changes here either.
            await self.stripe.cancel_subscription(row.stripe_subscription_id)
        now = max(int(time.time()), row.stripe_event_created or 0)
        await self.subscriptions.cancel_locally(
            tenant_id,
            {
                "tier": BillingTier.FREE,
                "status": SubscriptionStatus.CANCELED,
                "stripe_subscription_id": None,
                "current_period_end": None,
                "cancel_at_period_end": False,
            },
            now,
        )
        await self.session.refresh(row)
        log.info("subscription of tenant %s canceled; back to free", tenant_id)
        return await self.get_subscription(principal)

    @staticmethod
    def _require_billing_role(principal: Principal) -> None:
        if principal.tenant.role not in BILLING_ROLES:
            raise Forbidden(
                "Only the workspace owner or an admin manages its billing.",
                error="billing_role_required",
            )

    # --- the webhook -------------------------------------------------------------------

    async def handle_webhook(self, payload: bytes, signature: str | None) -> WebhookAck:
        try:
            event = self.stripe.construct_event(payload, signature)
        except WebhookNotConfigured as exc:
            raise ServiceUnavailable(
                "Stripe webhooks are not configured on this server.",
                error="webhook_not_configured",
            ) from exc
        except InvalidWebhook as exc:
            raise _invalid_webhook(str(exc)) from exc
        if find_bad_json(event) is not None:
            # No column can hold it (NUL, lone surrogates), and no real event has it.
            raise _invalid_webhook("NUL characters, unpaired surrogates or too deep nesting")
        if len(event["id"]) > MAX_STRIPE_ID_LENGTH:
            raise _invalid_webhook(f"an id is longer than {MAX_STRIPE_ID_LENGTH} characters")

        created = _created(event)
        # Claimed in the same transaction as the effect: a crash between them
        # rolls back both, and Stripe's retry finds the id unclaimed.
        claimed = await ProcessedEventRepository(self.session).claim(
            event["id"], event["type"][:100], created, is_sqlite=self.is_sqlite
        )
        if not claimed:
            log.info("stripe event %s already processed", event["id"])
            return WebhookAck(duplicate=True)
        handler = self._handlers.get(event["type"])
        if handler is not None:
            await handler(_dict(_dict(event.get("data")).get("object")), created)
        return WebhookAck(duplicate=False)

    def _marketplace(self) -> MarketplaceService:
        return MarketplaceService(self.session, self.stripe)

    async def _checkout_completed(self, obj: dict[str, Any], created: int) -> None:
        metadata = _dict(obj.get("metadata"))
        if obj.get("mode") == "payment":
            # A one-off payment: a paid plugin's purchase.
            await self._marketplace().purchase_paid(obj)
            return
        if obj.get("payment_status") == "unpaid":
            return  # the subscription starts with `async_payment_succeeded`
        tenant_id = _uuid(obj.get("client_reference_id")) or _uuid(metadata.get("tenant_id"))
        tier = _tier(metadata.get("tier"))
        if tenant_id is None or tier is None or tier == BillingTier.FREE:
            log.warning("checkout.session.completed without a tenant or a paid tier; ignored")
            return
        subscription_id = _stripe_id(obj.get("subscription"))
        current = await self.subscriptions.for_tenant(tenant_id)
        if (
            subscription_id
            and current is not None
            and current.stripe_subscription_id
            and current.stripe_subscription_id != subscription_id
            and current.status in LIVE_STATUSES
        ):
            # A second subscription for a workspace that has one (a Checkout opened
            # elsewhere): it is ended at once, the live one stays.
            log.warning(
                "tenant %s completed a second subscription %s; canceling it",
                tenant_id,
                subscription_id,
            )
            await self.stripe.cancel_subscription(subscription_id)
            return
        values: dict[str, Any] = {
            "tier": tier,
            "status": SubscriptionStatus.ACTIVE,
            "cancel_at_period_end": False,
            "pending_checkout_id": None,
            "pending_checkout_url": None,
            "pending_checkout_tier": None,
            "pending_checkout_expires_at": None,
        }
        if customer_id := _stripe_id(obj.get("customer")):
            values["stripe_customer_id"] = customer_id
        if subscription_id:
            await self.subscriptions.release_subscription_id(subscription_id, tenant_id)
            values["stripe_subscription_id"] = subscription_id
        await self._apply(tenant_id, created, values, "checkout.session.completed")

    async def _checkout_expired(self, obj: dict[str, Any], created: int) -> None:
        if obj.get("mode") == "payment":
            await self._marketplace().purchase_expired(obj)
            return
        if session_id := _stripe_id(obj.get("id")):
            await self.subscriptions.release_checkout(session_id)

    async def _account_updated(self, obj: dict[str, Any], created: int) -> None:
        await Payouts(self.session, self.stripe).account_updated(obj, created)

    async def _charge_refunded(self, obj: dict[str, Any], created: int) -> None:
        await self._marketplace().purchase_reversed(obj, PurchaseStatus.REFUNDED)

    async def _charge_disputed(self, obj: dict[str, Any], created: int) -> None:
        await self._marketplace().purchase_reversed(obj, PurchaseStatus.DISPUTED)

    async def complete_stub_checkout(self, principal: Principal, session_id: str) -> WebhookAck:
        """Stub mode: the caller "pays" a stub Checkout (a paid plugin's, or the workspace's
        subscription's). The signed `checkout.session.completed` Stripe would send goes
        through the webhook, so the effects are exactly those of a real payment."""
        not_found = NotFound("No such checkout.", error="checkout_not_found")
        if self.stripe.live:
            raise not_found
        purchase = await self._marketplace().plugins.purchase_by_session(session_id)
        if purchase is not None:
            if purchase.user_id != principal.user.id:
                raise not_found
            obj: dict[str, Any] = {
                "mode": "payment",
                "payment_status": "paid",
                "amount_total": purchase.amount_cents,
                "currency": purchase.currency.lower(),
                "client_reference_id": str(purchase.tenant_id),
                "payment_intent": f"pi_stub_{purchase.id.hex}",
                "metadata": {
                    "kind": "plugin_purchase",
                    "purchase_id": str(purchase.id),
                    "plugin_id": purchase.plugin_id,
                    "tenant_id": str(purchase.tenant_id),
                    "user_id": str(purchase.user_id),
                },
            }
        else:
            row = await self.subscriptions.for_tenant(principal.tenant.id)
            if row is None or row.pending_checkout_id != session_id:
                raise not_found
            self._require_billing_role(principal)
            tenant_id = principal.tenant.id
            obj = {
                "mode": "subscription",
                "payment_status": "paid",
                "client_reference_id": str(tenant_id),
                "customer": row.stripe_customer_id or f"cus_stub_{tenant_id.hex[:16]}",
                "subscription": f"sub_stub_{uuid.uuid4().hex[:16]}",
                "metadata": {
                    "tenant_id": str(tenant_id),
                    "user_id": str(principal.user.id),
                    "tier": row.pending_checkout_tier or "",
                },
            }
        payload = json.dumps(
            {
                "id": f"evt_stub_{uuid.uuid4().hex}",
                "object": "event",
                "type": "checkout.session.completed",
                "created": int(time.time()),
                "livemode": False,
                "data": {"object": {"id": session_id, "object": "checkout.session", **obj}},
            }
        ).encode()
        try:
            signature = self.stripe.stub_signature(payload)
        except WebhookNotConfigured as exc:
            raise ServiceUnavailable(
                "Stripe webhooks are not configured on this server.",
                error="webhook_not_configured",
            ) from exc
        return await self.handle_webhook(payload, signature)

    async def _subscription_updated(self, obj: dict[str, Any], created: int) -> None:
        subscription_id = _stripe_id(obj.get("id"))
        tenant_id = await self._tenant_of_subscription(obj, subscription_id)
        status = STRIPE_STATUSES.get(str(obj.get("status")))
        if tenant_id is None or subscription_id is None or status is None:
            log.warning("customer.subscription.updated for an unknown subscription; ignored")
            return
        items = _dict(obj.get("items")).get("data") or [{}]
        item = _dict(items[0])
        tier = self._tier_by_price.get(str(_dict(item.get("price")).get("id")))
        tier = tier or _tier(_dict(obj.get("metadata")).get("tier"))
        if tier is None:
            log.warning("subscription %s has an unknown price; ignored", subscription_id)
            return
        ended = status == SubscriptionStatus.CANCELED
        values: dict[str, Any] = {
            "tier": BillingTier.FREE if ended else tier,
            "status": status,
            "stripe_subscription_id": None if ended else subscription_id,
            # Newer API versions carry the period on the item, older ones on the subscription.
            "current_period_end": None
            if ended
            else _timestamp(obj.get("current_period_end") or item.get("current_period_end")),
            "cancel_at_period_end": False if ended else obj.get("cancel_at_period_end") is True,
        }
        if customer_id := _stripe_id(obj.get("customer")):
            values["stripe_customer_id"] = customer_id
        if not ended:
            await self.subscriptions.release_subscription_id(subscription_id, tenant_id)
        await self._apply(
            tenant_id, created, values, "customer.subscription.updated", subscription_id
        )

    async def _subscription_deleted(self, obj: dict[str, Any], created: int) -> None:
        subscription_id = _stripe_id(obj.get("id"))
        tenant_id = await self._tenant_of_subscription(obj, subscription_id)
        if tenant_id is None:
            log.warning("customer.subscription.deleted for an unknown subscription; ignored")
            return
        values = {
            "tier": BillingTier.FREE,
            "status": SubscriptionStatus.CANCELED,
            "stripe_subscription_id": None,
            "current_period_end": None,
            "cancel_at_period_end": False,
        }
        await self._apply(
            tenant_id, created, values, "customer.subscription.deleted", subscription_id
        )

    async def _payment_failed(self, obj: dict[str, Any], created: int) -> None:
        # Older API versions name the subscription on the invoice, newer ones under `parent`.
        details = _dict(_dict(obj.get("parent")).get("subscription_details"))
        subscription_id = _stripe_id(obj.get("subscription")) or _stripe_id(
            details.get("subscription")
        )
        tenant_id = await self.subscriptions.tenant_for_stripe(
            subscription_id, _stripe_id(obj.get("customer"))
        )
        if tenant_id is None:
            log.warning("invoice.payment_failed for an unknown customer; ignored")
            return
        applied = await self._apply(
            tenant_id,
            created,
            {"status": SubscriptionStatus.PAST_DUE},
            "invoice.payment_failed",
            subscription_id,
        )
        if applied:
            # The notification of SPEC §8: the operator's log and the status the client reads.
            log.warning(
                "payment failed for tenant %s (invoice %s): subscription marked past_due",
                tenant_id,
                _stripe_id(obj.get("id")) or "?",
            )

    async def _tenant_of_subscription(
        self, obj: dict[str, Any], subscription_id: str | None
    ) -> uuid.UUID | None:
        tenant_id = await self.subscriptions.tenant_for_stripe(
            subscription_id, _stripe_id(obj.get("customer"))
        )
        return tenant_id or _uuid(_dict(obj.get("metadata")).get("tenant_id"))

    async def _apply(
        self,
        tenant_id: uuid.UUID,
        created: int,
        values: dict[str, Any],
        event_type: str,
        subscription_id: str | None = None,
    ) -> bool:
        old_tier = await self.session.scalar(
            select(Subscription.tier).where(Subscription.tenant_id == tenant_id)
        )
        applied = await self.subscriptions.apply_event(
            tenant_id, created, values, subscription_id=subscription_id
        )
        if applied:
            log.info("%s applied to tenant %s", event_type, tenant_id)
            if "tier" in values:
                await self._follow_plan(tenant_id, old_tier, values["tier"])
        else:
            log.info("%s for tenant %s is stale or for another subscription", event_type, tenant_id)
        return applied
