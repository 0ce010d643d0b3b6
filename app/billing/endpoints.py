from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path, Query, Request

from app.auth.dependencies import CurrentPrincipal
from app.billing.dependencies import BillingServiceDep
from app.billing.schemas import (
    CheckoutRequest,
    CheckoutResponse,
    PortalResponse,
    StripeEvent,
    SubscriptionRead,
    WebhookAck,
)
from app.errors import error_responses
from app.kit.openapi import no_credentials, raw_body
from app.kit.policy import BodyKind, gateway_policy
from app.kit.routing import DomainRouter

router = DomainRouter(prefix="/billing", tags=["billing"])


@router.post(
    "/checkout",
    response_model=CheckoutResponse,
    summary="Subscribe to a paid tier, or change the plan of the live subscription",
    responses=error_responses(401, 403, 409, 422, 503),
)
async def checkout(
    body: CheckoutRequest, principal: CurrentPrincipal, service: BillingServiceDep
) -> CheckoutResponse:
    """Without a live subscription: a Stripe Checkout session (a stub URL in stub mode);
    the workspace has one open Checkout at a time (the same one is returned again, 409
    for another tier while it is open). With a live subscription: its price changes in
    place, prorated (upgrades invoiced now, downgrades credited on the next invoice),
    and credits top up to the new tier's monthly grant; never a second subscription."""
    return await service.checkout(principal, body.tier)


@router.post(
    "/webhook",
    response_model=WebhookAck,
    summary="Receive a Stripe event (signed)",
    responses=error_responses(400, 503),
    openapi_extra={
        **no_credentials(),
        **raw_body(
            StripeEvent,
            description="A Stripe event, exactly as Stripe sent it: `Stripe-Signature` signs "
            "these bytes.",
        ),
    },
)
@gateway_policy(rate_limited=False, body=BodyKind.WEBHOOK)
async def webhook(
    request: Request,
    service: BillingServiceDep,
    stripe_signature: Annotated[
        str | None,
        Header(
            alias="Stripe-Signature",
            description="Stripe's signature of the raw body (`t=…,v1=…`); checked against "
            "`STRIPE_WEBHOOK_SECRET`.",
        ),
    ] = None,
) -> WebhookAck:
    """Stripe's events, verified by signature; each event id takes effect once."""
    # The signature covers the exact bytes sent, so the body is read raw.
    return await service.handle_webhook(await request.body(), stripe_signature)


@router.get(
    "/subscription",
    response_model=SubscriptionRead,
    summary="Get the workspace's subscription",
    responses=error_responses(401),
)
async def get_subscription(
    principal: CurrentPrincipal, service: BillingServiceDep
) -> SubscriptionRead:
    """The workspace's subscription: tier, status, seats and its rate limit."""
    return await service.get_subscription(principal)


@router.delete(
    "/subscription",
    response_model=SubscriptionRead,
    summary="Cancel the subscription, now or at the end of the paid period",
    responses=error_responses(401, 403, 503),
)
async def cancel_subscription(
    principal: CurrentPrincipal,
    service: BillingServiceDep,
    at_period_end: Annotated[
        bool,
        Query(
            description="True: the subscription ends with its paid period (the tier holds "
            "until then; a checkout for the same tier withdraws it). False: it ends now and "
            "the workspace returns to free."
        ),
    ] = False,
) -> SubscriptionRead:
    """Cancel the subscription (at Stripe in live mode)."""
    return await service.cancel(principal, at_period_end=at_period_end)


@router.post(
    "/portal",
    response_model=PortalResponse,
    summary="Open Stripe's customer portal for the workspace",
    responses=error_responses(401, 403, 409, 503),
)
async def portal(principal: CurrentPrincipal, service: BillingServiceDep) -> PortalResponse:
    """A link to Stripe's customer portal (invoices, payment methods); a stub URL in stub
    mode. 409 while the workspace has never subscribed."""
    return await service.portal(principal)


@router.post(
    "/stub-checkout/{session_id}",
    response_model=WebhookAck,
    summary="Complete a stub Checkout (stub mode only)",
    responses=error_responses(401, 404, 503),
)
async def complete_stub_checkout(
    session_id: Annotated[str, Path(min_length=1, max_length=255, pattern=r"^cs_stub_[0-9a-f]+$")],
    principal: CurrentPrincipal,
    service: BillingServiceDep,
) -> WebhookAck:
    """Without a Stripe key, a paid plugin's `checkout_url` is this path + its session id,
    and a subscription's stub Checkout (`session_id` of `POST /billing/checkout`) is
    completed here too: the caller POSTs to "pay", and the signed
    `checkout.session.completed` Stripe would send goes through the webhook (the
    install and the sale, or the new tier, follow once). Signed with
    `STRIPE_WEBHOOK_SECRET`, or without one with a secret of this process; 404 in live
    mode."""
    return await service.complete_stub_checkout(principal, session_id)
