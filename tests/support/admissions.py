"""Admission requests for tests of the quota store itself (below the gate)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from app.models.base import utcnow
from app.quota.repository import AdmissionRequest


def admission_request(
    scope: str,
    *,
    limit: int = 10,
    system_limit: int = 1000,
    system_scope: str = "system",
    now: datetime | None = None,
    ttl: float = 60,
    daily_total: int = 1000,
    subject: str | None = None,
    ip: str = "192.0.2.1",
    daily_per_ip: int | None = None,
    daily_llm: int | None = None,
    daily_llm_per_ip: int | None = None,
) -> AdmissionRequest:
    """One unit of `scope`'s caller (its subject is the scope unless given)."""
    now = now or utcnow()
    return AdmissionRequest(
        lease_id=secrets.token_hex(16),
        scope=scope,
        limit=limit,
        system_scope=system_scope,
        system_limit=system_limit,
        now=now,
        expires_at=now + timedelta(seconds=ttl),
        day=now.date(),
        subject=subject or scope,
        daily_total=daily_total,
        ip_subject=f"ip:{ip}",
        daily_per_ip=daily_per_ip,
        daily_llm=daily_llm,
        daily_llm_per_ip=daily_llm_per_ip,
    )
