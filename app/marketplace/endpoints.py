from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Query, Request, Response, status

from app.auth.dependencies import AdminUser, CurrentUser
from app.billing.dependencies import StripeDep
from app.db import SessionDep
from app.errors import error_response, error_responses
from app.kit.routing import DomainRouter
from app.marketplace.dependencies import MarketplacePrincipal, MarketplaceServiceDep, PluginId
from app.marketplace.payouts import Payouts
from app.marketplace.schemas import (
    CatalogSort,
    ConnectResponse,
    EarningsReport,
    InstallResult,
    PendingPage,
    PluginDetail,
    PluginPage,
    PluginWithManifest,
    RatingRequest,
    RatingResult,
    ReviewRequest,
    ReviewResult,
)
from app.marketplace.service import ChecklistFailed

plugins_router = DomainRouter(prefix="/plugins", tags=["marketplace"])
admin_router = DomainRouter(prefix="/admin/plugins", tags=["marketplace admin"])

PageQuery = Annotated[int, Query(ge=1, le=10_000, description="1-based; 20 plugins a page.")]


@plugins_router.get(
    "",
    response_model=PluginPage,
    summary="Browse the plugin catalog",
    responses=error_responses(401, 403, 422),
)
async def catalog(
    principal: MarketplacePrincipal,
    service: MarketplaceServiceDep,
    category: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Search name and description.")
    ] = None,
    sort: CatalogSort = CatalogSort.INSTALLS,
    page: PageQuery = 1,
) -> PluginPage:
    """Approved plugins, filtered by category and text, sorted, 20 a page (Power tier and up)."""
    return await service.catalog(category=category, q=q, sort=sort, page=page)


@plugins_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PluginWithManifest,
    summary="Submit a plugin for review",
    responses=error_responses(401, 409, 422),
)
async def submit(
    manifest: Annotated[dict[str, Any], Body(description="The plugin manifest.")],
    user: CurrentUser,
    service: MarketplaceServiceDep,
) -> Any:
    """Submit a plugin manifest; it passes the automated checklist, then waits for review."""
    try:
        return await service.submit(manifest, user)
    except ChecklistFailed as exc:
        return error_response(
            422,
            "checklist_failed",
            exc.message,
            details=[failure.model_dump() for failure in exc.failures],
        )


# Declared before `/{plugin_id}`, which would otherwise capture "earnings".
@plugins_router.get(
    "/earnings",
    response_model=EarningsReport,
    summary="Get the caller's plugin earnings",
    responses=error_responses(401, 422),
)
async def earnings(
    user: CurrentUser,
    service: MarketplaceServiceDep,
    period: Annotated[
        str | None, Query(description="YYYY-MM (a month) or YYYY (a year); default this month.")
    ] = None,
) -> EarningsReport:
    """The caller's plugin sales and 70 % developer share over a period, per plugin."""
    return await service.earnings(user, period)


@plugins_router.get(
    "/{plugin_id}",
    response_model=PluginDetail,
    summary="Get a plugin",
    responses=error_responses(401, 403, 404, 422),
)
async def detail(
    plugin_id: PluginId, principal: MarketplacePrincipal, service: MarketplaceServiceDep
) -> PluginDetail:
    """One plugin, with whether the caller installed and rated it."""
    return await service.detail(plugin_id, principal.user)


@plugins_router.post(
    "/{plugin_id}/install",
    response_model=InstallResult,
    summary="Install a plugin (a paid one is bought first)",
    responses={
        202: {
            "model": InstallResult,
            "description": "A paid plugin not yet bought: pay at `checkout_url`; the install "
            "and the sale are recorded when the payment completes.",
        },
        **error_responses(401, 403, 404, 409, 422),
    },
)
async def install(
    plugin_id: PluginId,
    principal: MarketplacePrincipal,
    service: MarketplaceServiceDep,
    response: Response,
) -> InstallResult:
    """Install a plugin (idempotent). A paid plugin the user has not bought answers 202
    with a Stripe Checkout (payment mode) for the buyer's workspace; the same open
    Checkout is returned until it is paid or expires. Authors cannot buy their own
    plugin (409)."""
    result = await service.install(plugin_id, principal)
    if result.checkout_url is not None:
        response.status_code = status.HTTP_202_ACCEPTED
    return result


@plugins_router.delete(
    "/{plugin_id}/install",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Uninstall a plugin",
    responses=error_responses(401, 403, 404, 422),
)
async def uninstall(plugin_id: PluginId, user: CurrentUser, service: MarketplaceServiceDep) -> None:
    """Uninstall a plugin (idempotent). Open to every tier, so a downgraded workspace
    can still remove what it installed."""
    await service.uninstall(plugin_id, user)


@plugins_router.post(
    "/{plugin_id}/rating",
    response_model=RatingResult,
    summary="Rate a plugin",
    responses=error_responses(401, 403, 404, 422),
)
async def rate(
    plugin_id: PluginId,
    body: RatingRequest,
    principal: MarketplacePrincipal,
    service: MarketplaceServiceDep,
) -> RatingResult:
    """Rate an installed plugin 1–5; rating again replaces the caller's rating."""
    return await service.rate(plugin_id, body.rating, principal.user)


@admin_router.get(
    "/pending",
    response_model=PendingPage,
    summary="List submissions awaiting review (admin)",
    responses=error_responses(401, 403),
)
async def pending(
    admin: AdminUser, service: MarketplaceServiceDep, page: PageQuery = 1
) -> PendingPage:
    """Submissions awaiting review, oldest first (administrators only)."""
    return await service.pending(page)


@admin_router.post(
    "/{plugin_id}/review",
    response_model=ReviewResult,
    summary="Approve or reject a submission (admin)",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def review(
    plugin_id: PluginId, body: ReviewRequest, admin: AdminUser, service: MarketplaceServiceDep
) -> ReviewResult:
    """Approve or reject a pending submission (administrators only)."""
    return await service.review(plugin_id, body.decision, body.notes, admin)


developers_router = DomainRouter(prefix="/developers", tags=["marketplace"])


@developers_router.post(
    "/connect",
    response_model=ConnectResponse,
    summary="Onboard to Stripe Connect to be paid for plugin sales",
    responses=error_responses(401, 503),
)
async def connect(
    request: Request, user: CurrentUser, session: SessionDep, stripe: StripeDep
) -> ConnectResponse:
    """The caller's Stripe Connect account (created on the first call) and a fresh link
    to Stripe's hosted onboarding (a stub URL in stub mode). Shares are transferred only
    once Stripe reports the account payable (`account.updated`); until then they stay
    `pending` in `GET /plugins/earnings` and the payout job pays them afterwards."""
    return await Payouts(session, stripe).connect(user, is_sqlite=request.app.state.db.is_sqlite)


router = DomainRouter()
router.include_router(plugins_router)
router.include_router(admin_router)
router.include_router(developers_router)
