"""A per-worker cache in front of `AccessLookup`, dropped entry by entry when a row changes.

SPEC §2 and §12.5 allow it only because every worker forgets an entry as soon as
the row behind it changes (`app/auth/invalidation.py` delivers the changes:
PostgreSQL `LISTEN/NOTIFY`, or the engine's own writes on SQLite). While changes
cannot be delivered (the listening connection is down or not yet up) the cache is
empty and bypassed: every lookup reads the row.

What a lookup returns is cached in two parts, each dropped by its own changes:
the user with their roles (`u:<user id>`: email, admin flag, active flag, token
version; `m:<user id>:<tenant id>`: a membership) and the tenant (`t:<tenant
id>`: kind, tier, seats). "No such user or membership" is not cached.

A lookup that read the database while a change arrived does not store what it
read (the generation moved on); a subject held by an uncommitted write is not
served from the cache nor stored until that write is over.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from time import monotonic

from cachetools import LRUCache

from app.auth.access import AccessRecord, AccessSource
from app.models import BillingTier, MembershipRole, TenantKind

log = logging.getLogger(__name__)

# The PostgreSQL channel the triggers of migration 004 notify, and the payloads:
# "u:<user id>", "t:<tenant id>", "m:<user id>:<tenant id>".
CHANNEL = "adiuva_access"


@dataclass(slots=True)
class _User:
    email: str
    is_admin: bool
    is_active: bool
    token_version: int
    expires: float
    email_verified: bool
    roles: dict[uuid.UUID, MembershipRole] = field(default_factory=dict)  # by tenant


@dataclass(frozen=True, slots=True)
class _Tenant:
    kind: TenantKind
    tier: BillingTier
    seats: int
    expires: float


def subjects_of(change: str) -> tuple[uuid.UUID, ...]:
    """The user and tenant ids a change payload names; ValueError if it is not one."""
    kind, _, ids = change.partition(":")
    parts = ids.split(":")
    if (kind in ("u", "t") and len(parts) == 1) or (kind == "m" and len(parts) == 2):
        return tuple(uuid.UUID(part) for part in parts)
    raise ValueError(f"not an access change: {change!r}")


class AccessCache:
    """An `AccessSource` that answers from memory when it safely can.

    Bounded (least recently used users and tenants go first); an entry also lapses
    `ttl` seconds after it was read.
    """

    def __init__(self, source: AccessSource, *, maxsize: int, ttl: float) -> None:
        self.source = source
        self.ttl = ttl
        self._users: LRUCache[uuid.UUID, _User] = LRUCache(maxsize)
        self._tenants: LRUCache[uuid.UUID, _Tenant] = LRUCache(maxsize)
        self._live = False
        self._generation = 0
        self._held: Counter[uuid.UUID | None] = Counter()  # None: every row
        # PostgreSQL: a round trip on the listening connection, after which every change
        # committed before the call has been delivered (see AccessListener.catch_up).
        self._catch_up: Callable[[], Awaitable[None]] | None = None

    @property
    def live(self) -> bool:
        """Changes are being delivered: entries may be served and stored."""
        return self._live

    def __len__(self) -> int:
        return len(self._users) + len(self._tenants)

    async def lookup(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> AccessRecord | None:
        usable = self._usable(user_id, tenant_id)
        if usable and self._catch_up is not None and self._cached(user_id, tenant_id):
            # A change committed before this request (a logout answered by another
            # worker a moment ago) may still be on its way: take it in first.
            try:
                await self._catch_up()
            except Exception:
                usable = False  # the listener is failing: read the row
            else:
                usable = self._usable(user_id, tenant_id)
        if usable:
            record = self._cached(user_id, tenant_id)
            if record is not None:
                return record
        generation = self._generation
        record = await self.source.lookup(user_id, tenant_id)
        # Stored only if nothing changed (or went down) while the row was being read.
        if usable and record is not None and generation == self._generation:
            self._store(record)
        return record

    def _usable(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> bool:
        return self._live and not (
            self._held and (None in self._held or user_id in self._held or tenant_id in self._held)
        )

    def _cached(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> AccessRecord | None:
        user = self._users.get(user_id)
        tenant = self._tenants.get(tenant_id)
        if user is None or tenant is None:
            return None
        role = user.roles.get(tenant_id)
        now = monotonic()
        if role is None or user.expires <= now or tenant.expires <= now:
            return None
        return AccessRecord(
            user_id,
            tenant_id,
            user.email,
            user.is_admin,
            user.is_active,
            user.token_version,
            role,
            tenant.kind,
            tenant.tier,
            tenant.seats,
            user.email_verified,
        )

    def _store(self, record: AccessRecord) -> None:
        expires = monotonic() + self.ttl
        user = self._users.get(record.user_id)
        if user is None or user.expires <= expires - self.ttl:
            # (an entry still here was read since the last change to the user: same facts)
            user = _User(
                record.email,
                record.is_admin,
                record.is_active,
                record.token_version,
                expires,
                record.email_verified,
            )
            self._users[record.user_id] = user
        user.roles[record.tenant_id] = record.role
        self._tenants[record.tenant_id] = _Tenant(
            record.tenant_kind, record.tier, record.seats, expires
        )

    # --- invalidation ------------------------------------------------------------------
    def changed(self, change: str) -> None:
        """Forget what a change payload names (everything, if it cannot be read)."""
        self._generation += 1
        try:
            subjects = subjects_of(change)
        except ValueError:
            log.warning("unreadable access change; cache cleared", extra={"change": change})
            self._clear()
            return
        if change[0] == "t":
            self._tenants.pop(subjects[0], None)
        else:  # the user, or one of their memberships: the user's entry holds both
            self._users.pop(subjects[0], None)

    def hold(self, changes: Iterable[str]) -> list[uuid.UUID]:
        """A write not yet committed touches these rows: bypass them until `release`."""
        held: list[uuid.UUID] = []
        for change in changes:
            self.changed(change)
            try:
                held.extend(subjects_of(change))
            except ValueError:
                continue
        self._held.update(held)
        return held

    def hold_all(self) -> None:
        """A write not yet committed touches rows we cannot name: bypass every row."""
        self._clear()
        self._held[None] += 1

    def release_all(self) -> None:
        self._clear()
        self._held[None] -= 1
        self._held = +self._held

    def release(self, held: Iterable[uuid.UUID], changes: Iterable[str]) -> None:
        """The write is committed or rolled back: forget its rows once more, then serve."""
        for change in changes:
            self.changed(change)
        self._held.subtract(held)
        self._held = +self._held  # drop the subjects no write holds any more

    def go_live(self, catch_up: Callable[[], Awaitable[None]] | None = None) -> None:
        """Changes are delivered from now on; start from nothing.

        `catch_up`, when given, is awaited before an entry is served: it returns once
        every change committed before it was called has been delivered.
        """
        self._clear()
        self._catch_up = catch_up
        self._live = True

    def go_dark(self) -> None:
        """Changes may be missed from now on: forget everything and read every row."""
        self._live = False
        self._catch_up = None
        self._clear()

    def _clear(self) -> None:
        self._generation += 1
        self._users.clear()
        self._tenants.clear()
