"""Admission of units of work: daily quotas, the LLM quota, BYOK, concurrency leases.

A unit of work is a chat request (REST or WebSocket) or a demo example run.
The gate asks `QuotaService.admit()`; it answers with an `Admission` (the
`UnitOfWork` for the chat layer plus the leases to give back) or raises
429 / 503. The quota store failing means 503: quotas fail closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from app.billing.tiers import TierTable
from app.config import Settings
from app.credits.service import CreditService
from app.db import Database
from app.errors import ServiceUnavailable, TooManyRequests
from app.kit.sql import STORE_ERRORS
from app.models import QuotaKind
from app.quota.repository import CounterRepository, Lease, LeaseRepository
from app.quota.schemas import Allowance, Concurrency, LLMAllowance, QuotaStatus
from app.work import Charge, Identity, IdentityKind, LLMGrant, LLMKey, UnitOfWork

log = logging.getLogger(__name__)

SYSTEM_SCOPE = "system"


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


@dataclass(slots=True)
class Admission:
    unit: UnitOfWork
    leases: list[Lease]
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
        self, identity: Identity, llm_key: LLMKey | None, request_id: str | None
    ) -> Admission:
        policy = self.policy(identity, llm_key is not None)
        leases: list[Lease] = []
        try:
            leases = await self._take_slots(identity, policy)
            counts, reason = await self._count(identity, policy)
            use_llm = reason is None
            metered = (
                identity.kind is IdentityKind.USER and policy.daily_llm is None and llm_key is None
            )
            if metered:
                assert identity.tenant_id is not None
                await self.credits.ensure_monthly_grant(identity.tenant_id, identity.tier)
        except BaseException:
            await self.release(leases)
            raise
        grant = LLMGrant(
            use_llm=use_llm,
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
        return Admission(unit, leases, counts)

    async def _take_slots(self, identity: Identity, policy: QuotaPolicy) -> list[Lease]:
        """The caller's slot and a system slot, in one short transaction (both or neither)."""
        now = datetime.now(UTC)
        expires_at = now + timedelta(seconds=self.settings.LEASE_TTL_SECONDS)
        try:
            async with self.db.sessionmaker.begin() as session:
                leases = LeaseRepository(session)
                own = await leases.acquire(
                    lease_scope(identity), policy.concurrent, now, expires_at
                )
                if own is None:
                    raise TooManyRequests(
                        f"Too many requests running at once for this caller "
                        f"(limit {policy.concurrent}); wait for one to finish.",
                        error="concurrency_limit",
                        retry_after=5,
                    )
                system = await leases.acquire(
                    SYSTEM_SCOPE, self.settings.MAX_CONCURRENT_TASK_TREES, now, expires_at
                )
                if system is None:
                    raise ServiceUnavailable(
                        "The service is at capacity; try again in a few seconds.",
                        error="at_capacity",
                        headers={"Retry-After": "5"},
                    )
                return [own, system]
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def _count(
        self, identity: Identity, policy: QuotaPolicy
    ) -> tuple[list[Count], str | None]:
        """Take the unit's daily counts in one transaction: all of them, or none.

        Returns what was counted and, when the unit must use the demo fallback, why.
        """
        today = utc_today()
        counts: list[Count] = []
        try:
            async with self.db.sessionmaker.begin() as session:
                counters = CounterRepository(session)

                async def take(subject: str, kind: QuotaKind, limit: int) -> bool:
                    if await counters.consume(subject, kind, today, limit) is None:
                        return False
                    counts.append(Count(subject, kind, today))
                    return True

                # A refusal raises, which rolls back the counts already taken.
                if not await take(identity.subject, QuotaKind.TOTAL, policy.daily_total):
                    raise self._daily_refusal(
                        f"Daily quota of {policy.daily_total} requests reached", "daily_quota"
                    )
                if policy.daily_per_ip is not None and not await take(
                    ip_subject(identity), QuotaKind.TOTAL, policy.daily_per_ip
                ):
                    raise self._daily_refusal(
                        f"Daily quota of {policy.daily_per_ip} requests per address reached",
                        "ip_quota",
                    )
                if policy.daily_llm is None:
                    return counts, None
                # The address's LLM budget first: a fresh visitor id cannot add to it.
                if policy.daily_llm_per_ip is not None and not await take(
                    ip_subject(identity), QuotaKind.LLM, policy.daily_llm_per_ip
                ):
                    return counts, "ip_llm_quota_exhausted"
                if not await take(identity.subject, QuotaKind.LLM, policy.daily_llm):
                    await self._give_back(counters, [c for c in counts if c.kind is QuotaKind.LLM])
                    counts = [c for c in counts if c.kind is not QuotaKind.LLM]
                    return counts, "llm_quota_exhausted"
                return counts, None
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def give_back(self, admission: Admission, charge: Charge) -> None:
        """Return the counts of a unit that did no work (or failed on our side), atomically."""
        if charge is Charge.FULL:
            return
        counts = admission.counts
        if charge is Charge.NO_LLM:
            counts = [count for count in counts if count.kind is QuotaKind.LLM]
        if not counts:
            return
        try:
            async with self.db.sessionmaker.begin() as session:
                await self._give_back(CounterRepository(session), counts)
        except STORE_ERRORS:
            # The caller keeps the count: logged, and the next day resets it anyway.
            log.exception("could not give back the counts of a refused unit of work")

    @staticmethod
    async def _give_back(counters: CounterRepository, counts: list[Count]) -> None:
        for count in counts:
            await counters.give_back(count.subject, count.kind, count.day)

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
        today, now = utc_today(), datetime.now(UTC)
        try:
            async with self.db.sessionmaker() as session:
                counters, leases = CounterRepository(session), LeaseRepository(session)
                used = await counters.used(identity.subject, QuotaKind.TOTAL, today)
                llm_used = await counters.used(identity.subject, QuotaKind.LLM, today)
                ip_used = await counters.used(ip_subject(identity), QuotaKind.TOTAL, today)
                ip_llm_used = await counters.used(ip_subject(identity), QuotaKind.LLM, today)
                in_use = await leases.in_use(lease_scope(identity), now)
                system_in_use = await leases.in_use(SYSTEM_SCOPE, now)
        except STORE_ERRORS as exc:
            raise _unavailable(exc) from exc
        llm_remaining = None if policy.daily_llm is None else max(0, policy.daily_llm - llm_used)
        per_ip_llm = _allowance(policy.daily_llm_per_ip, ip_llm_used)
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
            per_ip=_allowance(policy.daily_per_ip, ip_used),
            per_ip_llm=per_ip_llm,
            concurrency=Concurrency(
                limit=policy.concurrent,
                in_use=in_use,
                system_limit=self.settings.MAX_CONCURRENT_TASK_TREES,
                system_in_use=system_in_use,
            ),
            rate_limit_per_minute=self.tiers.rate_per_minute(identity.tier, identity.seats),
            reset_at=next_reset(now),
        )

    async def release(self, leases: list[Lease]) -> None:
        if not leases:
            return
        try:
            async with self.db.sessionmaker.begin() as session:
                repo = LeaseRepository(session)
                for lease in leases:
                    await repo.release(lease)
        except STORE_ERRORS:
            # The leases expire by themselves after LEASE_TTL_SECONDS.
            log.exception("could not release concurrency leases")

    async def renew(self, leases: list[Lease]) -> None:
        expires_at = datetime.now(UTC) + timedelta(seconds=self.settings.LEASE_TTL_SECONDS)
        async with self.db.sessionmaker.begin() as session:
            repo = LeaseRepository(session)
            for lease in leases:
                await repo.renew(lease, expires_at)


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
