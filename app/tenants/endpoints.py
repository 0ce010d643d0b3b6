"""Team routes: workspaces, members and roles, invitations (app/tenants/teams.py).

They name the workspace in the path; `X-Tenant-Id` (app/tenants/acting.py) chooses
the workspace of the other routes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request, status

from app.auth.account_endpoints import get_mailer
from app.auth.dependencies import CurrentPrincipal
from app.auth.throttle import AuthThrottle
from app.config import Settings
from app.db import SessionDep
from app.errors import error_responses
from app.kit.deps import ClientIPDep, SettingsDep
from app.kit.routing import DomainRouter
from app.mail.queue import Mailer
from app.tenants.repository import MemberRow, WorkspaceRow
from app.tenants.schemas import (
    InvitationAccept,
    InvitationCreate,
    InvitationList,
    InvitationRead,
    MemberList,
    MemberRead,
    RoleChange,
    TeamCreate,
    WorkspaceList,
    WorkspaceRead,
)
from app.tenants.teams import TeamService

router = DomainRouter(tags=["tenants"])


@asynccontextmanager
async def teams_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Invitations send mail: limited per client address and per inviting user."""
    app.state.invitation_throttle = AuthThrottle(
        app.state.auth_throttle.window,
        settings.TEAM_INVITATION_RATE_LIMIT_PER_IP,
        settings.TEAM_INVITATION_RATE_LIMIT_PER_USER,
        fail_open=settings.RATE_LIMIT_FAIL_OPEN,
    )
    yield


async def get_team_service(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    mailer: Annotated[Mailer, Depends(get_mailer)],
) -> TeamService:
    return TeamService(session, settings, mailer, request.app.state.seat_sync)


TeamServiceDep = Annotated[TeamService, Depends(get_team_service)]


def _workspace(row: WorkspaceRow, default: uuid.UUID | None) -> WorkspaceRead:
    return WorkspaceRead(
        id=row.id,
        name=row.name,
        kind=row.kind,
        role=row.role,
        tier=row.tier,
        seats=row.seats,
        default=row.id == default,
    )


def _member(row: MemberRow) -> MemberRead:
    return MemberRead(
        user_id=row.user_id,
        email=row.email,
        role=row.role,
        active=row.active,
        joined_at=row.joined_at,
    )


@router.post(
    "/tenants",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkspaceRead,
    summary="Create a team workspace",
    responses=error_responses(401, 403, 422),
)
async def create_team(
    body: TeamCreate, principal: CurrentPrincipal, service: TeamServiceDep
) -> WorkspaceRead:
    """A new team workspace (free tier until it subscribes); the caller is its owner."""
    row = await service.create_team(principal.user.id, body.name)
    return _workspace(row, None)


@router.get(
    "/tenants",
    response_model=WorkspaceList,
    summary="List the caller's workspaces",
    responses=error_responses(401, 403),
)
async def list_workspaces(principal: CurrentPrincipal, service: TeamServiceDep) -> WorkspaceList:
    """Every workspace the caller belongs to, with their role; `default` marks the one a
    request without `X-Tenant-Id` acts in."""
    rows, default = await service.workspaces(principal.user.id)
    return WorkspaceList(workspaces=[_workspace(row, default) for row in rows])


@router.get(
    "/tenants/{tenant_id}/members",
    response_model=MemberList,
    summary="List a workspace's members",
    responses=error_responses(401, 403, 404),
)
async def list_members(
    tenant_id: uuid.UUID, principal: CurrentPrincipal, service: TeamServiceDep
) -> MemberList:
    """The members and their roles (any member may look)."""
    rows = await service.members(tenant_id, principal.user.id)
    return MemberList(members=[_member(row) for row in rows])


@router.patch(
    "/tenants/{tenant_id}/members/{user_id}",
    response_model=MemberRead,
    summary="Change a member's role",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def change_role(
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    body: RoleChange,
    principal: CurrentPrincipal,
    service: TeamServiceDep,
) -> MemberRead:
    """Admins move members between member and admin; owners also make and demote owners.
    The last owner cannot be demoted (409 `last_owner`)."""
    row = await service.change_role(tenant_id, principal.user.id, user_id, body.role)
    return _member(row)


@router.delete(
    "/tenants/{tenant_id}/members/me",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Leave a workspace",
    responses=error_responses(401, 403, 404, 409),
)
async def leave(tenant_id: uuid.UUID, principal: CurrentPrincipal, service: TeamServiceDep) -> None:
    """Leave the workspace; the last owner cannot (409 `last_owner`)."""
    await service.remove(tenant_id, principal.user.id, principal.user.id)


@router.delete(
    "/tenants/{tenant_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def remove_member(
    tenant_id: uuid.UUID, user_id: uuid.UUID, principal: CurrentPrincipal, service: TeamServiceDep
) -> None:
    """Admins remove members and admins, owners anyone but the last owner. Takes effect on
    the removed member's next request, on every worker."""
    await service.remove(tenant_id, principal.user.id, user_id)


@router.post(
    "/tenants/{tenant_id}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationRead,
    summary="Invite someone by email",
    responses=error_responses(401, 403, 404, 409, 422, 429),
)
async def invite(
    tenant_id: uuid.UUID,
    body: InvitationCreate,
    principal: CurrentPrincipal,
    service: TeamServiceDep,
    request: Request,
    ip: ClientIPDep,
) -> InvitationRead:
    """Mail a single-use, expiring token to the address (admins and owners). The token is
    never in the response: only the invited mailbox receives it."""
    throttle: AuthThrottle = request.app.state.invitation_throttle
    await throttle.check("invitation", ip, str(principal.user.id))
    invitation = await service.invite(
        tenant_id, principal.user.id, principal.user.email, str(body.email), body.role
    )
    return InvitationRead.model_validate(invitation)


@router.get(
    "/tenants/{tenant_id}/invitations",
    response_model=InvitationList,
    summary="List pending invitations",
    responses=error_responses(401, 403, 404),
)
async def list_invitations(
    tenant_id: uuid.UUID, principal: CurrentPrincipal, service: TeamServiceDep
) -> InvitationList:
    """Invitations neither accepted, revoked nor expired (admins and owners)."""
    rows = await service.pending_invitations(tenant_id, principal.user.id)
    return InvitationList(invitations=[InvitationRead.model_validate(row) for row in rows])


@router.delete(
    "/tenants/{tenant_id}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a pending invitation",
    responses=error_responses(401, 403, 404, 422),
)
async def revoke_invitation(
    tenant_id: uuid.UUID,
    invitation_id: uuid.UUID,
    principal: CurrentPrincipal,
    service: TeamServiceDep,
) -> None:
    """The mailed token stops working at once (admins and owners)."""
    await service.revoke(tenant_id, principal.user.id, invitation_id)


@router.post(
    "/invitations/accept",
    response_model=WorkspaceRead,
    summary="Accept an invitation",
    responses=error_responses(400, 401, 403, 409, 422, 429),
)
async def accept_invitation(
    body: InvitationAccept,
    principal: CurrentPrincipal,
    service: TeamServiceDep,
    request: Request,
    ip: ClientIPDep,
) -> WorkspaceRead:
    """Join the team with the mailed token, signed in with the invited address. The token
    travels in the body, not the path, so that it never reaches access logs."""
    throttle: AuthThrottle = request.app.state.invitation_throttle
    await throttle.check("invitation_accept", ip, str(principal.user.id))
    row = await service.accept(body.token, principal.user.id, principal.user.email)
    return _workspace(row, None)
