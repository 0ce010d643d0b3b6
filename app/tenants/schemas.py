"""Request and response bodies of the team routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from app.auth.schemas import _normalise_email
from app.models import BillingTier, MembershipRole, TenantKind

TeamName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TeamName = Field(description="The team's display name.")


class WorkspaceRead(BaseModel):
    id: uuid.UUID
    name: str
    kind: TenantKind
    role: MembershipRole = Field(description="The caller's role in the workspace.")
    tier: BillingTier
    seats: int = Field(description="Active members; the team tier is billed and limited per seat.")
    default: bool = Field(
        description="The workspace a request acts in when it sends no X-Tenant-Id header."
    )


class WorkspaceList(BaseModel):
    workspaces: list[WorkspaceRead]


class MemberRead(BaseModel):
    user_id: uuid.UUID
    email: str
    role: MembershipRole
    active: bool = Field(description="Inactive accounts keep their membership but take no seat.")
    joined_at: datetime


class MemberList(BaseModel):
    members: list[MemberRead]


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: MembershipRole


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(max_length=320, examples=["grace@example.com"])
    role: MembershipRole = MembershipRole.MEMBER

    # Normalised as registration does, so the invitation matches the account's address.
    _email = field_validator("email", mode="before")(_normalise_email)


class InvitationRead(BaseModel):
    """An invitation as the team's admins see it; the token exists only in the mail."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    role: MembershipRole
    expires_at: datetime
    created_at: datetime


class InvitationList(BaseModel):
    invitations: list[InvitationRead]


class InvitationAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200, description="The token from the mail.")
