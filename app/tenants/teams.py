"""Team workspaces: creation, members and roles, invitations.

Roles (owner > admin > member):
- any member lists the members and may leave;
- admins invite (as member or admin), change roles between member and admin, and
  remove members and admins;
- owners do all that, and make, demote and remove owners;
- a team always keeps an owner: the last owner can neither be demoted nor leave nor
  be removed.

Every change to a team's memberships locks the tenant row first and re-reads the
actor's role under that lock; the change itself is one guarded statement that
re-counts the owners (app/tenants/repository.py). Two owners removing each other at
once therefore leave one of them in place.

Invitations: a random token (32 bytes, URL-safe) is mailed to the invited address
and only its SHA-256 is stored; it works once, until it expires
(`TEAM_INVITATION_TTL_HOURS`) or is revoked. It is accepted by a signed-in user
whose account address equals the invited one (both normalised as at
registration). A verified address is not required: holding the token shows that
the mailbox received it. An invitation sent again to the same address replaces the
earlier one.

Membership changes are committed here, before the mail is queued and the seat
count is synced with Stripe (app/billing/seats.py): neither happens for a change
that did not commit.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.seats import SeatSync
from app.config import Settings
from app.errors import BadRequest, Conflict, Forbidden, NotFound
from app.mail.queue import Mailer
from app.models import MembershipRole, Tenant, TenantKind, User
from app.models.base import utcnow
from app.models.tenancy import Invitation
from app.tenants.mail import INVITATION, invitation_job
from app.tenants.repository import (
    InvitationRepository,
    MemberRow,
    TenantRepository,
    WorkspaceRow,
)

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
RANK = {MembershipRole.MEMBER: 0, MembershipRole.ADMIN: 1, MembershipRole.OWNER: 2}
INVALID_INVITATION = "This invitation is invalid, used, revoked or expired; ask for a new one."


def may_manage(
    actor: MembershipRole, target: MembershipRole, new_role: MembershipRole | None = None
) -> bool:
    """May `actor` change a `target` member's role to `new_role` (None: remove them)?"""
    if actor is MembershipRole.OWNER:
        return True
    if actor is MembershipRole.ADMIN:
        return target is not MembershipRole.OWNER and new_role is not MembershipRole.OWNER
    return False


def may_invite(actor: MembershipRole, role: MembershipRole) -> bool:
    return RANK[actor] >= RANK[MembershipRole.ADMIN] and (
        role is not MembershipRole.OWNER or actor is MembershipRole.OWNER
    )


def _workspace_gone() -> NotFound:
    # Also for a workspace the caller is not a member of: its existence is not revealed.
    return NotFound("No such workspace.", error="workspace_not_found")


class TeamService:
    def __init__(
        self, session: AsyncSession, settings: Settings, mailer: Mailer, seats: SeatSync
    ) -> None:
        self.session = session
        self.settings = settings
        self.mailer = mailer
        self.seats = seats
        self.tenants = TenantRepository(session)
        self.invitations = InvitationRepository(session)

    # --- workspaces ----------------------------------------------------------------------

    async def create_team(self, user_id: uuid.UUID, name: str) -> WorkspaceRow:
        tenant = await self.tenants.create(name, TenantKind.TEAM)
        await self.tenants.add_member(tenant.id, user_id, MembershipRole.OWNER)
        await self.tenants.create_subscription(tenant.id)
        await self.session.commit()
        log.info("team created", extra={"tenant_id": str(tenant.id), "user_id": str(user_id)})
        return await self._workspace(user_id, tenant.id)

    async def workspaces(self, user_id: uuid.UUID) -> tuple[list[WorkspaceRow], uuid.UUID | None]:
        """The user's workspaces, and the default one (acted in without X-Tenant-Id)."""
        user = await self.session.get(User, user_id)
        default = user.default_tenant_id if user is not None else None
        return await self.tenants.workspaces_of(user_id), default

    async def _workspace(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> WorkspaceRow:
        for row in await self.tenants.workspaces_of(user_id):
            if row.id == tenant_id:
                return row
        raise _workspace_gone()

    # --- members -------------------------------------------------------------------------

    async def members(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> list[MemberRow]:
        if await self.tenants.role_of(tenant_id, user_id) is None:
            raise _workspace_gone()
        return await self.tenants.members(tenant_id)

    async def change_role(
        self,
        tenant_id: uuid.UUID,
        actor_id: uuid.UUID,
        target_id: uuid.UUID,
        role: MembershipRole,
    ) -> MemberRow:
        tenant, actor = await self._lock_as_member(tenant_id, actor_id)
        self._team_only(tenant)
        target = await self._target(tenant_id, target_id)
        if not may_manage(actor, target, role):
            raise Forbidden(
                "Admins manage members and admins; only owners make or change owners.",
                error="role_required",
            )
        if target is not role and not await self.tenants.set_role(tenant_id, target_id, role):
            raise self._last_owner()
        await self.session.commit()
        log.info(
            "member role changed",
            extra={"tenant_id": str(tenant_id), "user_id": str(target_id), "role": role.value},
        )
        return next(m for m in await self.tenants.members(tenant_id) if m.user_id == target_id)

    async def remove(self, tenant_id: uuid.UUID, actor_id: uuid.UUID, target_id: uuid.UUID) -> None:
        """Remove a member (or leave, when the target is the actor)."""
        tenant, actor = await self._lock_as_member(tenant_id, actor_id)
        if target_id != actor_id:
            self._team_only(tenant)
            target = await self._target(tenant_id, target_id)
            if not may_manage(actor, target):
                raise Forbidden(
                    "Admins remove members and admins; only owners remove owners.",
                    error="role_required",
                )
        if not await self.tenants.remove_member(tenant_id, target_id):
            raise self._last_owner()
        await self.session.commit()
        log.info(
            "member removed",
            extra={
                "tenant_id": str(tenant_id),
                "user_id": str(target_id),
                "left": target_id == actor_id,
            },
        )
        self.seats.changed(tenant_id)

    async def _lock_as_member(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID
    ) -> tuple[Tenant, MembershipRole]:
        tenant = await self.tenants.lock(tenant_id)
        role = await self.tenants.role_of(tenant_id, user_id) if tenant is not None else None
        if tenant is None or role is None:
            raise _workspace_gone()
        return tenant, role

    async def _target(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> MembershipRole:
        role = await self.tenants.role_of(tenant_id, user_id)
        if role is None:
            raise NotFound("No such member of this workspace.", error="member_not_found")
        return role

    @staticmethod
    def _team_only(tenant: Tenant) -> None:
        if tenant.kind is not TenantKind.TEAM:
            raise Conflict(
                "A personal workspace has one member; create a team to work with others.",
                error="personal_workspace",
            )

    @staticmethod
    def _last_owner() -> Conflict:
        return Conflict(
            "A team keeps at least one owner: make another member owner first.",
            error="last_owner",
        )

    # --- invitations ---------------------------------------------------------------------

    async def invite(
        self,
        tenant_id: uuid.UUID,
        actor_id: uuid.UUID,
        actor_email: str,
        email: str,
        role: MembershipRole,
    ) -> Invitation:
        tenant, actor = await self._lock_as_member(tenant_id, actor_id)
        self._team_only(tenant)
        if not may_invite(actor, role):
            raise Forbidden(
                "Admins invite members and admins; only owners invite owners.",
                error="role_required",
            )
        if await self.tenants.has_member_with_email(tenant_id, email):
            raise Conflict("This address is already a member.", error="already_member")
        if (
            await self.invitations.pending_count(tenant_id)
            >= self.settings.TEAM_MAX_PENDING_INVITATIONS
        ):
            raise Conflict(
                "Too many pending invitations; revoke some or wait for them to be accepted.",
                error="too_many_invitations",
            )
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires = utcnow() + timedelta(hours=self.settings.TEAM_INVITATION_TTL_HOURS)
        invitation = await self.invitations.create(tenant_id, email, role, token, actor_id, expires)
        await self.session.commit()
        self.mailer.submit(
            INVITATION.name,
            invitation_job(
                self.settings,
                email=email,
                team=tenant.name,
                inviter=actor_email,
                role=role.value,
                token=token,
            ),
        )
        log.info(
            "team invitation sent",
            extra={"tenant_id": str(tenant_id), "invitation_id": str(invitation.id)},
        )
        return invitation

    async def pending_invitations(
        self, tenant_id: uuid.UUID, actor_id: uuid.UUID
    ) -> list[Invitation]:
        await self._admin(tenant_id, actor_id)
        return await self.invitations.pending(tenant_id)

    async def revoke(
        self, tenant_id: uuid.UUID, actor_id: uuid.UUID, invitation_id: uuid.UUID
    ) -> None:
        await self._admin(tenant_id, actor_id)
        if not await self.invitations.revoke(tenant_id, invitation_id):
            raise NotFound("No such pending invitation.", error="invitation_not_found")

    async def _admin(self, tenant_id: uuid.UUID, actor_id: uuid.UUID) -> None:
        role = await self.tenants.role_of(tenant_id, actor_id)
        if role is None:
            raise _workspace_gone()
        if RANK[role] < RANK[MembershipRole.ADMIN]:
            raise Forbidden("Admins and owners only.", error="role_required")

    async def accept(self, token: str, user_id: uuid.UUID, email: str) -> WorkspaceRow:
        invitation = await self.invitations.redeem(token, email, user_id)
        if invitation is None:
            pending = await self.invitations.find_pending(token)
            if pending is not None:  # a good token, for another address: kept for its owner
                raise Forbidden(
                    "This invitation was sent to another address; sign in with that one.",
                    error="invitation_email_mismatch",
                )
            raise BadRequest(INVALID_INVITATION, error="invalid_token")
        tenant_id = invitation.tenant_id
        if await self.tenants.lock(tenant_id) is None:
            raise BadRequest(INVALID_INVITATION, error="invalid_token")
        if await self.tenants.role_of(tenant_id, user_id) is not None:
            raise Conflict("You are already a member of this team.", error="already_member")
        await self.tenants.add_member(tenant_id, user_id, MembershipRole(invitation.role))
        await self.session.commit()
        log.info(
            "team invitation accepted",
            extra={"tenant_id": str(tenant_id), "user_id": str(user_id)},
        )
        self.seats.changed(tenant_id)
        return await self._workspace(user_id, tenant_id)
