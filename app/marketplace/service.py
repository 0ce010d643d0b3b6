"""The plugin marketplace: catalog, submission and review, installs, ratings, revenue."""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import Principal
from app.auth.verification import VerifiedFeature, require_verified_email
from app.billing.stripe_client import StripeGateway
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.marketplace.checklist import run_checklist
from app.marketplace.payouts import Payouts
from app.marketplace.repository import PluginRepository
from app.marketplace.schemas import (
    PAGE_SIZE,
    CatalogSort,
    ChecklistFailure,
    EarningsLine,
    EarningsReport,
    EarningsTotal,
    InstallResult,
    PayoutLine,
    PendingPage,
    PluginDetail,
    PluginPage,
    PluginRead,
    PluginWithManifest,
    RatingResult,
    RevenueRead,
    ReviewResult,
)
from app.models import (
    Plugin,
    PluginPurchase,
    PluginReview,
    PluginStatus,
    RevenueEvent,
    ReviewDecision,
    TransferStatus,
    User,
)
from app.models.base import utcnow
from app.models.marketplace import PurchaseStatus

log = logging.getLogger(__name__)

DEVELOPER_SHARE_PERCENT = 70
PERIOD_PATTERN = re.compile(r"(\d{4})(?:-(\d{2}))?", re.ASCII)
# Earnings exist from the epoch on; the bound keeps every period's end a valid date.
EARNINGS_YEARS = range(1970, 3000)
# A purchase's Checkout lives as long as Stripe's shortest (30 minutes) and a bit.
PURCHASE_LIFETIME = timedelta(minutes=31)
# How a sale's `transfer_status` reads in the earnings report.
PAYOUT_STATES = {
    TransferStatus.PENDING: "pending",
    TransferStatus.CREATED: "paid",
    TransferStatus.FAILED: "failed",
    TransferStatus.REVERSED: "reversed",
    TransferStatus.STUBBED: "stubbed",
}
# In stub mode a purchase's Checkout is completed by POSTing to this path + its id.
STUB_CHECKOUT_PATH = "/api/v1/billing/stub-checkout"


class ChecklistFailed(Exception):
    def __init__(self, failures: list[ChecklistFailure]) -> None:
        self.failures = failures
        rules = ", ".join(dict.fromkeys(f.rule for f in failures))
        self.message = f"The manifest failed the automated checklist: {rules}."
        super().__init__(self.message)


def split_revenue(amount_cents: int) -> tuple[int, int]:
    """(developer, platform) in whole cents; the platform takes the rounding, no cent lost."""
    developer = amount_cents * DEVELOPER_SHARE_PERCENT // 100
    return developer, amount_cents - developer


def parse_period(period: str | None, now: datetime | None = None) -> tuple[str, datetime, datetime]:
    """`YYYY-MM` (a month) or `YYYY` (a year) as a half-open UTC range; default this month."""
    if period is None:
        now = now or utcnow()
        period = f"{now.year:04d}-{now.month:02d}"
    match = PERIOD_PATTERN.fullmatch(period)
    invalid = Unprocessable(
        f"period must be YYYY-MM or YYYY, a year from {EARNINGS_YEARS[0]} to {EARNINGS_YEARS[-1]}.",
        error="invalid_period",
    )
    if match is None or int(match.group(1)) not in EARNINGS_YEARS:
        raise invalid
    year = int(match.group(1))
    if match.group(2) is None:
        return period, datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    month = int(match.group(2))
    if not 1 <= month <= 12:
        raise invalid
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return period, start, end


def _pages(total: int) -> int:
    return max(1, math.ceil(total / PAGE_SIZE))


class MarketplaceService:
    def __init__(
        self,
        session: AsyncSession,
        stripe: StripeGateway,
        verified_email_required_for: Collection[str] = (),
    ) -> None:
        self.verified_email_required_for = verified_email_required_for
        self.session = session
        self.stripe = stripe
        self.plugins = PluginRepository(session)

    # --- browsing ---------------------------------------------------------------------

    async def catalog(
        self, *, category: str | None, q: str | None, sort: CatalogSort, page: int
    ) -> PluginPage:
        statement = self.plugins.catalog_statement(category=category, q=q, sort=sort)
        rows, total = await self.plugins.paginate(statement, page=page, limit=PAGE_SIZE)
        return PluginPage(
            items=[PluginRead.model_validate(p) for p in rows],
            total=total,
            page=page,
            page_size=PAGE_SIZE,
            pages=_pages(total),
        )

    async def detail(self, plugin_id: str, user: User) -> PluginDetail:
        plugin = await self._visible(plugin_id, user)
        return PluginDetail(
            **PluginRead.model_validate(plugin).model_dump(),
            rating_sum=plugin.rating_sum,
            installed=await self.plugins.is_installed(plugin_id, user.id),
            my_rating=await self.plugins.rating_of(plugin_id, user.id),
        )

    async def _visible(self, plugin_id: str, user: User) -> Plugin:
        """Approved plugins for everyone; a submission also for its author and admins."""
        plugin = await self.plugins.get(plugin_id)
        if plugin is None or (
            plugin.status != PluginStatus.APPROVED
            and plugin.author_id != user.id
            and not user.is_admin
        ):
            raise NotFound(f"No plugin {plugin_id!r}.", error="plugin_not_found")
        return plugin

    async def _approved(self, plugin_id: str) -> Plugin:
        plugin = await self.plugins.get(plugin_id)
        if plugin is None or plugin.status != PluginStatus.APPROVED:
            raise NotFound(f"No plugin {plugin_id!r}.", error="plugin_not_found")
        return plugin

    # --- submission and review --------------------------------------------------------

    async def submit(self, manifest: dict[str, Any], author: User) -> PluginWithManifest:
        await require_verified_email(
            self.session,
            self.verified_email_required_for,
            author.id,
            VerifiedFeature.PLUGIN_SUBMISSION,
        )
        failures = run_checklist(manifest)
        if failures:
            raise ChecklistFailed(failures)
        plugin_id = manifest["id"]
        values = {
            "name": manifest["name"].strip(),
            "description": manifest.get("description", ""),
            "version": manifest["version"],
            "category": manifest["category"],
            "price_cents": manifest.get("price_cents", 0),
            "currency": manifest.get("currency", "EUR"),
            "permissions": list(dict.fromkeys(manifest.get("permissions", []))),
            "manifest": manifest,
            "status": PluginStatus.PENDING_REVIEW,
        }
        created = await self.plugins.insert_new({"id": plugin_id, "author_id": author.id, **values})
        if not created and not await self.plugins.resubmit(plugin_id, author.id, values):
            raise Conflict(f"The plugin id {plugin_id!r} is taken.", error="plugin_id_taken")
        plugin = await self.plugins.get(plugin_id)
        assert plugin is not None
        await self.session.refresh(plugin)
        log.info("plugin %s submitted for review by %s", plugin_id, author.id)
        return PluginWithManifest.model_validate(plugin)

    async def pending(self, page: int) -> PendingPage:
        rows, total = await self.plugins.paginate(
            self.plugins.pending_statement(), page=page, limit=PAGE_SIZE
        )
        return PendingPage(
            items=[PluginWithManifest.model_validate(p) for p in rows],
            total=total,
            page=page,
            page_size=PAGE_SIZE,
            pages=_pages(total),
        )

    async def review(
        self, plugin_id: str, decision: ReviewDecision, notes: str, admin: User
    ) -> ReviewResult:
        if await self.plugins.get(plugin_id) is None:
            raise NotFound(f"No plugin {plugin_id!r}.", error="plugin_not_found")
        if decision == ReviewDecision.REJECTED and not notes.strip():
            raise Unprocessable(
                "A rejection needs notes telling the developer why.", error="notes_required"
            )
        status = (
            PluginStatus.APPROVED if decision == ReviewDecision.APPROVED else PluginStatus.REJECTED
        )
        # Conditional on `pending_review`, so two admins deciding at once record one decision.
        if not await self.plugins.decide(plugin_id, status):
            raise Conflict(f"Plugin {plugin_id!r} is not awaiting review.", error="not_pending")
        review = await self.plugins.add_review(
            PluginReview(plugin_id=plugin_id, reviewer_id=admin.id, decision=decision, notes=notes)
        )
        log.info("plugin %s %s by %s", plugin_id, decision, admin.id)
        return ReviewResult(
            plugin_id=plugin_id,
            status=status,
            decision=decision,
            notes=notes,
            reviewer_id=admin.id,
            reviewed_at=review.reviewed_at,
        )

    # --- installs -----------------------------------------------------------------------

    async def install(self, plugin_id: str, principal: Principal) -> InstallResult:
        """Install a free plugin, or one the user already bought; a paid plugin not yet
        bought starts its purchase instead (`checkout_url`; the install follows the
        payment)."""
        plugin = await self._approved(plugin_id)
        user = principal.user
        if plugin.price_cents > 0 and not await self.plugins.has_sale(plugin_id, user.id):
            if plugin.author_id == user.id:
                raise Conflict("You cannot buy your own plugin.", error="own_plugin_purchase")
            if not await self.plugins.is_installed(plugin_id, user.id):
                return await self._start_purchase(plugin, principal)
        created = await self.plugins.install(plugin_id, user.id, principal.tenant.id)
        if not created:
            return InstallResult(
                plugin_id=plugin_id,
                newly_installed=False,
                install_count=await self.plugins.install_count(plugin_id),
            )
        count = await self.plugins.add_installs(plugin_id, 1)
        return InstallResult(plugin_id=plugin_id, newly_installed=True, install_count=count)

    async def _start_purchase(self, plugin: Plugin, principal: Principal) -> InstallResult:
        """A Stripe Checkout (payment mode) for the buyer's workspace; one open at a time."""
        await require_verified_email(
            self.session,
            self.verified_email_required_for,
            principal.user.id,
            VerifiedFeature.CHECKOUT,
        )
        user = principal.user
        now = utcnow()
        open_purchase = await self.plugins.open_purchase(plugin.id, user.id)
        if open_purchase is not None and open_purchase.expires_at <= now:
            await self.plugins.set_purchase_status(
                open_purchase.id, PurchaseStatus.EXPIRED, [PurchaseStatus.PENDING]
            )
            open_purchase = None
        if open_purchase is None:
            purchase = PluginPurchase(
                id=uuid.uuid4(),
                plugin_id=plugin.id,
                user_id=user.id,
                tenant_id=principal.tenant.id,
                amount_cents=plugin.price_cents,
                currency=plugin.currency,
                status=PurchaseStatus.PENDING,
                expires_at=now + PURCHASE_LIFETIME,
            )
            if await self.plugins.add_purchase(purchase):
                return await self._checkout_purchase(plugin, principal, purchase)
            open_purchase = await self.plugins.open_purchase(plugin.id, user.id)
        if open_purchase is None or not open_purchase.checkout_url:
            raise Conflict(
                "A purchase of this plugin is being started; try again in a moment.",
                error="purchase_in_progress",
            )
        return self._pending(open_purchase)

    async def _checkout_purchase(
        self, plugin: Plugin, principal: Principal, purchase: PluginPurchase
    ) -> InstallResult:
        session = await self.stripe.create_payment_checkout(
            amount_cents=purchase.amount_cents,
            currency=purchase.currency,
            product_name=plugin.name,
            tenant_id=purchase.tenant_id,
            metadata={
                "kind": "plugin_purchase",
                "purchase_id": str(purchase.id),
                "plugin_id": plugin.id,
                "tenant_id": str(purchase.tenant_id),
                "user_id": str(purchase.user_id),
            },
            customer_email=principal.user.email,
            expires_at=int(purchase.expires_at.timestamp()),
            stub_url=STUB_CHECKOUT_PATH,
        )
        purchase.stripe_checkout_session_id = session.id
        purchase.checkout_url = session.url
        await self.session.flush()
        log.info("purchase %s of plugin %s: checkout %s", purchase.id, plugin.id, session.id)
        return self._pending(purchase)

    def _pending(self, purchase: PluginPurchase) -> InstallResult:
        return InstallResult(
            plugin_id=purchase.plugin_id,
            installed=False,
            newly_installed=False,
            install_count=0,
            checkout_url=purchase.checkout_url,
            purchase_id=purchase.id,
        )

    async def uninstall(self, plugin_id: str, user: User) -> None:
        if await self.plugins.get(plugin_id) is None:
            raise NotFound(f"No plugin {plugin_id!r}.", error="plugin_not_found")
        if await self.plugins.uninstall(plugin_id, user.id):
            await self.plugins.add_installs(plugin_id, -1)

    # --- purchases: Stripe's word ------------------------------------------------------

    async def purchase_paid(self, obj: dict[str, Any]) -> None:
        """`checkout.session.completed` (payment mode): install and record the sale, once."""
        session_id = obj.get("id")
        purchase = (
            await self.plugins.purchase_by_session(session_id)
            if isinstance(session_id, str)
            else None
        )
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        if purchase is None or metadata.get("purchase_id") != str(purchase.id):
            log.warning("payment checkout %s matches no purchase; ignored", session_id)
            return
        if obj.get("payment_status") != "paid":
            log.info("purchase %s: checkout completed, payment still pending", purchase.id)
            return
        if (
            obj.get("amount_total") != purchase.amount_cents
            or str(obj.get("currency", "")).upper() != purchase.currency.upper()
        ):
            log.error("purchase %s: paid amount differs from the price; ignored", purchase.id)
            return
        payment_intent = obj.get("payment_intent")
        if isinstance(payment_intent, dict):
            payment_intent = payment_intent.get("id")
        if not await self.plugins.set_purchase_status(
            purchase.id,
            PurchaseStatus.PAID,
            [PurchaseStatus.PENDING, PurchaseStatus.EXPIRED],
            stripe_payment_intent_id=payment_intent if isinstance(payment_intent, str) else None,
        ):
            log.info("purchase %s was already settled", purchase.id)
            return
        plugin = await self.plugins.get(purchase.plugin_id)
        assert plugin is not None  # plugins are never deleted while sold (RESTRICT)
        if await self.plugins.install(plugin.id, purchase.user_id, purchase.tenant_id):
            await self.plugins.add_installs(plugin.id, 1)
        await self._record_sale(plugin, purchase)
        log.info("purchase %s paid: plugin %s installed", purchase.id, plugin.id)

    async def purchase_expired(self, obj: dict[str, Any]) -> None:
        session_id = obj.get("id")
        if not isinstance(session_id, str):
            return
        purchase = await self.plugins.purchase_by_session(session_id)
        if purchase is not None:
            await self.plugins.set_purchase_status(
                purchase.id, PurchaseStatus.EXPIRED, [PurchaseStatus.PENDING]
            )

    async def purchase_reversed(self, obj: dict[str, Any], status: PurchaseStatus) -> None:
        """`charge.refunded` (in full) or `charge.dispute.created`: the sale is reversed
        (a negative revenue row, the paid share taken back) and the install removed."""
        if status == PurchaseStatus.REFUNDED and obj.get("refunded") is not True:
            log.info("partial refund of charge %s: the sale stands", obj.get("id"))
            return
        payment_intent = obj.get("payment_intent")
        if isinstance(payment_intent, dict):
            payment_intent = payment_intent.get("id")
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        try:
            purchase_id = uuid.UUID(str(metadata.get("purchase_id")))
        except ValueError:
            purchase_id = None
        purchase = await self.plugins.purchase_by_payment(
            payment_intent if isinstance(payment_intent, str) else None, purchase_id
        )
        if purchase is None:
            log.info("reversed charge %s is not a plugin purchase; ignored", obj.get("id"))
            return
        if not await self.plugins.set_purchase_status(purchase.id, status, [PurchaseStatus.PAID]):
            log.info("purchase %s was already reversed", purchase.id)
            return
        if await self.plugins.uninstall(purchase.plugin_id, purchase.user_id):
            await self.plugins.add_installs(purchase.plugin_id, -1)
        sale = await self.plugins.sale_of_purchase(purchase.id)
        if sale is None:
            return
        if sale.transfer_status == TransferStatus.CREATED and sale.stripe_transfer_id:
            # The share was paid out: Stripe takes it back (once, whatever the retries).
            await self.stripe.reverse_transfer(
                sale.stripe_transfer_id, idempotency_key=f"reversal-{sale.id}"
            )
        elif sale.transfer_status in (TransferStatus.FAILED, TransferStatus.PENDING):
            sale.transfer_status = TransferStatus.REVERSED  # never to be paid out now
        await self.plugins.add_revenue(
            RevenueEvent(
                id=uuid.uuid4(),
                plugin_id=sale.plugin_id,
                user_id=sale.user_id,
                developer_id=sale.developer_id,
                amount_cents=-sale.amount_cents,
                currency=sale.currency,
                developer_share_cents=-sale.developer_share_cents,
                platform_share_cents=-sale.platform_share_cents,
                transfer_status=TransferStatus.NOT_REQUIRED,
                transfer_attempts=0,
                reverses_id=sale.id,
            )
        )
        log.info("purchase %s %s: sale %s reversed", purchase.id, status, sale.id)

    async def _record_sale(self, plugin: Plugin, purchase: PluginPurchase) -> RevenueRead:
        developer_share, platform_share = split_revenue(purchase.amount_cents)
        event = RevenueEvent(
            id=uuid.uuid4(),
            plugin_id=plugin.id,
            user_id=purchase.user_id,
            developer_id=plugin.author_id,
            amount_cents=purchase.amount_cents,
            currency=purchase.currency,
            developer_share_cents=developer_share,
            platform_share_cents=platform_share,
            transfer_status=TransferStatus.NOT_REQUIRED,
            transfer_attempts=0,
            purchase_id=purchase.id,
        )
        if plugin.author_id is not None and developer_share > 0:
            await self._transfer(event, plugin.author_id)
        await self.plugins.add_revenue(event)
        return RevenueRead.model_validate(event)

    async def _transfer(self, event: RevenueEvent, developer_id: uuid.UUID) -> None:
        """The developer's share: to a payable Connect account now, else by the payout job."""
        await Payouts(self.session, self.stripe).pay(event)

    # --- ratings --------------------------------------------------------------------------

    async def rate(self, plugin_id: str, rating: int, user: User) -> RatingResult:
        await self._approved(plugin_id)
        if not await self.plugins.is_installed(plugin_id, user.id):
            raise Forbidden("Only users who installed a plugin may rate it.", error="not_installed")
        rating_sum, rating_count = await self._apply_rating(plugin_id, user.id, rating)
        return RatingResult(
            plugin_id=plugin_id,
            rating=rating,
            rating_count=rating_count,
            avg_rating=rating_sum / rating_count,
        )

    async def _apply_rating(
        self, plugin_id: str, user_id: uuid.UUID, rating: int
    ) -> tuple[int, int]:
        # Two passes at most: a concurrent first rating by the same user makes
        # our insert a no-op, and the second pass then updates that row.
        for _ in range(2):
            previous = await self.plugins.lock_rating(plugin_id, user_id)
            if previous is not None:
                await self.plugins.set_rating(plugin_id, user_id, rating)
                return await self.plugins.add_rating_totals(plugin_id, rating - previous, 0)
            if await self.plugins.insert_rating(plugin_id, user_id, rating):
                return await self.plugins.add_rating_totals(plugin_id, rating, 1)
        raise Conflict("The rating changed concurrently; try again.", error="rating_conflict")

    # --- earnings ------------------------------------------------------------------------

    async def earnings(self, developer: User, period: str | None) -> EarningsReport:
        label, start, end = parse_period(period)
        rows = await self.plugins.earnings(developer.id, start, end)
        lines = [
            EarningsLine(
                plugin_id=plugin_id,
                currency=currency,
                sales=sales,
                amount_cents=amount,
                developer_share_cents=developer_share,
                platform_share_cents=platform_share,
            )
            for plugin_id, currency, sales, amount, developer_share, platform_share in rows
        ]
        totals: dict[str, EarningsTotal] = {}
        for line in lines:
            total = totals.setdefault(
                line.currency,
                EarningsTotal(
                    currency=line.currency,
                    sales=0,
                    amount_cents=0,
                    developer_share_cents=0,
                    platform_share_cents=0,
                ),
            )
            total.sales += line.sales
            total.amount_cents += line.amount_cents
            total.developer_share_cents += line.developer_share_cents
            total.platform_share_cents += line.platform_share_cents
        account = await Payouts(self.session, self.stripe).status(developer.id)
        payouts = [
            PayoutLine(
                status=PAYOUT_STATES[status],
                currency=currency,
                sales=sales,
                developer_share_cents=share,
            )
            for status, currency, sales, share in await self.plugins.payouts(
                developer.id, start, end
            )
            if status in PAYOUT_STATES
        ]
        return EarningsReport(
            period=label,
            start=start,
            end=end,
            totals=list(totals.values()),
            plugins=lines,
            payouts=payouts,
            payable=bool(account and account.payable),
        )
