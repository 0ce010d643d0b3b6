"""Admission of units of work: daily quotas, the LLM quota, BYOK, concurrency leases.

A unit of work is a chat request (REST or WebSocket) or a demo example run.
The gate asks `QuotaService.admit()`; it answers with an `Admission` (the
`UnitOfWork` for the chat layer plus the lease and counts to give back) or raises
429 / 503, and ends the unit with `QuotaService.finish()`. Each is one round trip
to the quota store on PostgreSQL (see app/quota/repository.py). The quota store
failing means 503: quotas fail closed.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import anyio

from app.billing.providers import ProviderAllowance
from app.billing.tiers import TierTable
from app.config import Settings
from app.credits.service import CreditService
from app.db import Database
from app.errors import ServiceUnavailable, TooManyRequests
from app.kit.sql import STORE_ERRORS
from app.kit.tasks import finish_even_if_cancelled
from app.models import QuotaKind
from app.quota.repository import AdmissionRequest, Outcome, QuotaStore
from app.quota.schemas import Allowance, Concurrency, LLMAllowance, QuotaStatus
from app.work import Charge, Identity, IdentityKind, LLMGrant, LLMKey, UnitOfWork

log = logging.getLogger(__name__)

SYSTEM_SCOPE = "system"
# A tier without a batch limit still counts its runs, under a limit no tenant reaches.
UNLIMITED = 2**31 - 1


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    daily_total: int
    daily_llm: int | None  # None: LLM use is metered by credits, not counted
    concurrent: int
    daily_per_ip: int | None
    daily_llm_per_ip: int | None  # anonymous LLM use, whatever visitor id the address shows


@dataclass(frozen=True, slots=True)
class Count:
    """One daily counter a unit of work incremented (so it can be given back)."""

    subject: str
    kind: QuotaKind
    day: date


@dataclass(frozen=True, slots=True)
class BatchScope:
    """A plan run's admission: its lease counts against the tenant's "batch jobs active"
    (SPEC §2) instead of the caller's concurrent requests."""

    scope: str
    limit: int | None  # None: unlimited


def batch_scope(identity: Identity, limit: int | None) -> BatchScope:
    return BatchScope(f"batch:{identity.tenant_id}", limit)


@dataclass(slots=True)
class Admission:
    unit: UnitOfWork
    lease_id: str  # the caller's slot and a system slot, until finished or lapsed
    counts: list[Count]


def utc_today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).date()


def next_reset(now: datetime | None = None) -> datetime:
    """Daily quotas are calendar UTC days: they reset at the next UTC midnight."""
    today = utc_today(now)
    return datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)


def seconds_until_reset(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    return max(1, int((next_reset(now) - now).total_seconds()))


def lease_scope(identity: Identity) -> str:
    return f"subject:{identity.subject}"


def ip_subject(identity: Identity) -> str:
    return f"ip:{identity.ip}"


class QuotaService:
    def __init__(
        self, db: Database, settings: Settings, tiers: TierTable, credits: CreditService
    ) -> None:
        self.db = db
        self.settings = settings
        self.tiers = tiers
        self.credits = credits
        self.providers = ProviderAllowance(db, tiers)
        self.store = QuotaStore.for_database(
            db, synchronous_commit=settings.QUOTA_SYNCHRONOUS_COMMIT
        )

    def policy(self, identity: Identity, byok: bool) -> QuotaPolicy:
        s = self.settings
        if identity.kind is IdentityKind.USER:
            limits = self.tiers[identity.tier]
            llm = limits.daily_llm_units
            return QuotaPolicy(
                daily_total=limits.daily_units,
                # With the caller's own key, every unit may use the LLM.
                daily_llm=limits.daily_units if byok and llm is not None else llm,
                concurrent=limits.concurrent,
                daily_per_ip=None,
                daily_llm_per_ip=None,
            )
        return QuotaPolicy(
            daily_total=s.RATE_LIMIT_DAILY_PER_USER,
            daily_llm=s.RATE_LIMIT_DAILY_PER_USER if byok else s.RATE_LIMIT_DAILY_LLM_PER_USER,
            concurrent=s.MAX_CONCURRENT_TASK_TREES_PER_USER,
            daily_per_ip=s.RATE_LIMIT_DAILY_PER_IP,
            # With their own key a visitor spends nobody's LLM budget.
            daily_llm_per_ip=None if byok else s.RATE_LIMIT_DAILY_LLM_PER_IP,
        )

    async def admit(
        self,
        identity: Identity,
        llm_key: LLMKey | None,
        request_id: str | None,
        *,
        batch: BatchScope | None = None,
    ) -> Admission:
        """The caller's slot, a system slot and the day's counts, atomically (one round trip).

        With `batch` (a plan run), the lease is taken in the tenant's batch scope instead
        of the caller's: the same statement, the same lapsing and renewal.
        """
        if llm_key is not None and identity.tenant_id is not None and identity.has_account:
            # The tier's count of BYOK providers; refused before anything is counted.
            try:
                await self.providers.check(identity.tenant_id, identity.tier, llm_key.provider)
            except STORE_ERRORS as exc:
                raise _unavailable(exc) from exc
        policy = self.policy(identity, llm_key is not None)
        now = datetime.now(UTC)
        if batch is not None:
            scope = batch.scope
            limit = UNLIMITED if batch.limit is None else batch.limit
        else:
            scope, limit = lease_scope(identity), policy.concurrent
        request = AdmissionRequest(
            lease_id=secrets.token_hex(16),
            scope=scope,
            limit=limit,
            system_scope=SYSTEM_SCOPE,
            system_limit=self.settings.MAX_CONCURRENT_TASK_TREES,
            now=now,
            expires_at=now + timedelta(seconds=self.settings.LEASE_TTL_SECONDS),
            day=utc_today(now),
            subject=identity.subject,
            daily_total=policy.daily_total,
            ip_subject=ip_subject(identity),
            daily_per_ip=policy.daily_per_ip,
            daily_llm=policy.daily_llm,
            daily_llm_per_ip=policy.daily_llm_per_ip,
        )

        async def give_back(outcome: Outcome) -> None:
            if not outcome.refused:
                await self._release(request.lease_id, request.day, _counted(request, outcome))

        try:
            # A statement the database has received commits even if the caller goes
            # away: a cancelled caller's admission still ends, and what it took goes back.
            outcome = await finish_even_if_cancelled(self.store.admit(request), undo=give_back)
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc
        if outcome.refused:
            if batch is not None and outcome is Outcome.CONCURRENCY_LIMIT:
                raise TooManyRequests(
                    f"This workspace already has {limit} plan runs active (the tier's batch "
                    "jobs limit); wait for one to end or cancel one.",
                    error="batch_limit",
                    retry_after=5,
                )
            raise self._refusal(outcome, policy)
        counts = _counted(request, outcome)
        metered = (
            identity.kind is IdentityKind.USER and policy.daily_llm is None and llm_key is None
        )
        if metered:
            assert identity.tenant_id is not None
            try:
                await self.credits.ensure_monthly_grant(identity.tenant_id, identity.tier)
            except BaseException:
                # No work was done: the slots and every count go back.
                with anyio.CancelScope(shield=True):
                    await self._release(request.lease_id, request.day, counts)
                raise
        reason = None if outcome is Outcome.OK else outcome.value
        grant = LLMGrant(
            use_llm=reason is None,
            api_key=llm_key.key if llm_key else None,
            provider=llm_key.provider if llm_key else None,
            metered=metered,
            fallback_reason=reason,
        )
        unit = UnitOfWork(
            subject=identity.subject,
            tier=identity.tier,
            llm=grant,
            request_id=request_id,
            user_id=identity.user_id,
            tenant_id=identity.tenant_id,
            demo_session_id=identity.demo_session_id,
            accountant=self.credits if metered else None,
            default_estimate=self.settings.CREDIT_RESERVE_ESTIMATE,
        )
        return Admission(unit, request.lease_id, counts)

    def _refusal(
        self, outcome: Outcome, policy: QuotaPolicy
    ) -> TooManyRequests | ServiceUnavailable:
        if outcome is Outcome.CONCURRENCY_LIMIT:
            return TooManyRequests(
                f"Too many requests running at once for this caller "
                f"(limit {policy.concurrent}); wait for one to finish.",
                error="concurrency_limit",
                retry_after=5,
            )
        if outcome is Outcome.AT_CAPACITY:
            return ServiceUnavailable(
                "The service is at capacity; try again in a few seconds.",
                error="at_capacity",
                headers={"Retry-After": "5"},
            )
        if outcome is Outcome.DAILY_QUOTA:
            return self._daily_refusal(
                f"Daily quota of {policy.daily_total} requests reached", "daily_quota"
            )
        return self._daily_refusal(
            f"Daily quota of {policy.daily_per_ip} requests per address reached", "ip_quota"
        )

    async def finish(self, admission: Admission, charge: Charge) -> None:
        """Give the slots back, and the counts a unit without work returns, in one round trip."""
        counts = admission.counts
        if charge is Charge.FULL:
            counts = []
        elif charge is Charge.NO_LLM:
            counts = [count for count in counts if count.kind is QuotaKind.LLM]
        day = admission.counts[0].day if admission.counts else utc_today()
        await self._release(admission.lease_id, day, counts)

    async def release_lease(self, lease_id: str) -> None:
        """Give a lease's slots back, counts untouched (a plan run cancelled elsewhere)."""
        await self._release(lease_id, utc_today(), [])

    async def _release(self, lease_id: str, day: date, counts: list[Count]) -> None:
        try:
            await self.store.release(lease_id, day, [(c.subject, c.kind) for c in counts])
        except STORE_ERRORS:
            # The lease lapses by itself after LEASE_TTL_SECONDS; the counts stay taken
            # (the next day resets them anyway).
            log.exception("could not release a unit of work's lease")

    async def renew(self, lease_id: str) -> bool:
        """Keep a running unit's lease live; False when it had lapsed (its slots may be gone)."""
        now = datetime.now(UTC)
        expires_at = now + timedelta(seconds=self.settings.LEASE_TTL_SECONDS)
        return await self.store.renew(lease_id, now, expires_at)

    @staticmethod
    def _daily_refusal(text: str, code: str) -> TooManyRequests:
        reset = next_reset()
        return TooManyRequests(
            f"{text}; it resets at {reset.isoformat().replace('+00:00', 'Z')}.",
            error=code,
            retry_after=seconds_until_reset(),
            headers={"X-Quota-Reset": reset.isoformat().replace("+00:00", "Z")},
        )

    async def status(self, identity: Identity, *, premium: bool) -> QuotaStatus:
        policy = self.policy(identity, premium)
        now = datetime.now(UTC)
        try:
            usage = await self.store.usage(
                identity.subject,
                ip_subject(identity),
                lease_scope(identity),
                SYSTEM_SCOPE,
                utc_today(now),
                now,
            )
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc
        used, llm_used = usage.used, usage.llm_used
        llm_remaining = None if policy.daily_llm is None else max(0, policy.daily_llm - llm_used)
        per_ip_llm = _allowance(policy.daily_llm_per_ip, usage.ip_llm_used)
        return QuotaStatus(
            identity=identity.kind.value,
            tier=identity.tier,
            premium=premium,
            demo=identity.kind is not IdentityKind.USER,
            fallback_active=llm_remaining == 0
            or (per_ip_llm is not None and per_ip_llm.remaining == 0),
            daily=Allowance(
                limit=policy.daily_total, used=used, remaining=max(0, policy.daily_total - used)
            ),
            llm=LLMAllowance(
                limit=policy.daily_llm,
                used=llm_used,
                remaining=llm_remaining,
                metered_by_credits=policy.daily_llm is None,
            ),
            per_ip=_allowance(policy.daily_per_ip, usage.ip_used),
            per_ip_llm=per_ip_llm,
            concurrency=Concurrency(
                limit=policy.concurrent,
                in_use=usage.in_use,
                system_limit=self.settings.MAX_CONCURRENT_TASK_TREES,
                system_in_use=usage.system_in_use,
            ),
            rate_limit_per_minute=self.tiers.rate_per_minute(identity.tier, identity.seats),
            reset_at=next_reset(now),
        )


def _counted(request: AdmissionRequest, outcome: Outcome) -> list[Count]:
    """The counts an admitted unit took, in the order it took them."""
    day = request.day
    counts = [Count(request.subject, QuotaKind.TOTAL, day)]
    if request.daily_per_ip is not None:
        counts.append(Count(request.ip_subject, QuotaKind.TOTAL, day))
    if request.daily_llm is not None and outcome.counted_llm:
        if request.daily_llm_per_ip is not None:
            counts.append(Count(request.ip_subject, QuotaKind.LLM, day))
        counts.append(Count(request.subject, QuotaKind.LLM, day))
    return counts


def _allowance(limit: int | None, used: int) -> Allowance | None:
    if limit is None:
        return None
    return Allowance(limit=limit, used=used, remaining=max(0, limit - used))


def _unavailable(exc: Exception) -> ServiceUnavailable:
    log.error("quota store unavailable", extra={"error": type(exc).__name__})
    return ServiceUnavailable(
        "Quota accounting is temporarily unavailable; try again shortly.",
        error="quota_unavailable",
        headers={"Retry-After": "5"},
    )
