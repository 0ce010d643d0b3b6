"""Which workspace a signed-in request acts in: the `X-Tenant-Id` header.

Without the header a request acts in the access token's tenant (the personal
workspace chosen at login). With it, in the named workspace, provided the caller is
a member of it now: the membership is checked on every request, through the same
access source as the token itself (the per-worker cache of app/auth/cache.py, whose
entries every worker drops when a membership changes), so acting in another
workspace costs no query once cached, and a removed member is refused on their next
request on every worker.

A caller who is not a member of the named workspace gets 403 `not_a_member`,
whether or not the workspace exists (nothing is revealed about other workspaces); a
header that is not a workspace id gets 400 `invalid_tenant_header`. The gateway
(app/gateway/identity.py) and `get_principal` both resolve the tenant here, so the
rate limit, quotas, credits, storage, billing and every route use the same one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from app.auth.access import AccessRecord, AccessSource, access_claims_of, authorize
from app.errors import BadRequest, Forbidden

TENANT_HEADER = "X-Tenant-Id"
TENANT_HEADER_KEY = TENANT_HEADER.lower().encode()


def invalid_tenant_header() -> BadRequest:
    return BadRequest(
        f"{TENANT_HEADER} must be the id (a UUID) of one of your workspaces.",
        error="invalid_tenant_header",
    )


def not_a_member() -> Forbidden:
    return Forbidden(
        f"You are not a member of the workspace named by {TENANT_HEADER}.",
        error="not_a_member",
    )


def requested_tenant(value: str | bytes | None) -> uuid.UUID | None:
    """The workspace a request names; None without the header; 400 if malformed."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value is None or not value.strip():
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise invalid_tenant_header() from None


async def authorize_in(
    source: AccessSource, claims: Mapping[str, Any], requested: uuid.UUID | None
) -> AccessRecord | None:
    """The caller in the workspace they act in; None if the token no longer holds.

    Raises `Forbidden` (not_a_member) when the token holds but the caller is not a
    member of the requested workspace.
    """
    parsed = access_claims_of(claims)
    if parsed is None:
        return None
    if requested is None or requested == parsed.tenant_id:
        return await authorize(source, claims)
    record = await source.lookup(parsed.user_id, requested)
    if record is not None:
        return record if record.admits(parsed.token_version) else None
    # No row: no such member there, or no such user at all. The token decides which.
    if await authorize(source, claims) is None:
        return None
    raise not_a_member()
