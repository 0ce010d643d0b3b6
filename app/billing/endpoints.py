from __future__ import annotations

from typing import Annotated

from fastapi import Header, Request

from app.auth.dependencies import CurrentPrincipal
from app.billing.dependencies import BillingServiceDep
from app.billing.schemas import (
    CheckoutRequest,
    CheckoutResponse,
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
    summary="Start a Stripe Checkout for a paid tier",
    responses=error_responses(401, 403, 409, 422, 503),
)
async def checkout(
    body: CheckoutRequest, principal: CurrentPrincipal, service: BillingServiceDep
) -> CheckoutResponse:
    """Start a Stripe Checkout session for a paid tier (a stub URL in stub mode)."""
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
    summary="Cancel the subscription",
    responses=error_responses(401, 403, 503),
)
async def cancel_subscription(
    principal: CurrentPrincipal, service: BillingServiceDep
) -> SubscriptionRead:
    """Cancel the subscription (at Stripe in live mode); the workspace returns to free."""
    return await service.cancel(principal)
