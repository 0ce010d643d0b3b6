"""Tenancy: every account starts with a personal workspace on the free tier."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import MembershipRole, Tenant, TenantKind, User
from app.tenants.repository import TenantRepository


async def create_personal_workspace(session: AsyncSession, user: User) -> Tenant:
    """Make the user's personal tenant (owner membership, free subscription)."""
    tenants = TenantRepository(session)
    tenant = await tenants.create(f"{user.email} (personal)", TenantKind.PERSONAL)
    await tenants.add_member(tenant.id, user.id, MembershipRole.OWNER)
    await tenants.create_subscription(tenant.id)
    user.default_tenant_id = tenant.id
    await session.flush()
    return tenant
