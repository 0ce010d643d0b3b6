"""Demo sessions: a virtual tenant with its own copy of a template workspace."""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.security import TokenCodec
from app.chat.schemas import Action
from app.config import Settings
from app.demo.limits import check_workspace_size
from app.demo.repository import DemoSessionRepository
from app.demo.schemas import (
    DemoAccount,
    DemoAccounts,
    DemoSessionCreated,
    DemoSessionExtended,
    DemoSessionInfo,
    DemoStats,
    SampleProject,
)
from app.demo.session_ref import session_ref
from app.demo.templates import TemplateCatalog, WorkspaceTemplate
from app.demo.workspace import (
    ActionError,
    Workspace,
    apply_actions,
    summarize,
)
from app.errors import Conflict, Gone, NotFound, Unprocessable
from app.models import DemoSession, DemoSessionStatus, Tenant, TenantKind
from app.models.base import utcnow
from app.tenants.repository import TenantRepository

log = logging.getLogger(__name__)

SESSION_ID_PREFIX = "demo_"
_PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def new_session_id() -> str:
    # 192 random bits: the id is a bearer credential (the X-Demo-Session-Id header).
    return SESSION_ID_PREFIX + secrets.token_urlsafe(24)


def ensure_live(row: DemoSession, now: datetime | None = None) -> DemoSession:
    """The session if it can still be used; 410 once it is deleted or past its expiry."""
    now = now or utcnow()
    if row.status == DemoSessionStatus.DELETED:
        raise Gone(
            "This demo session was ended. Start a new one with POST /api/v1/demo/sessions.",
            error="session_ended",
        )
    if row.status == DemoSessionStatus.EXPIRED or row.expires_at <= now:
        raise Gone(
            f"This demo session expired at {row.expires_at.isoformat()}. "
            "Start a new one with POST /api/v1/demo/sessions.",
            error="session_expired",
        )
    return row


def describe_template(template: WorkspaceTemplate, today: datetime) -> DemoAccount:
    workspace = Workspace.model_validate(template.materialize(today.date()))
    projects = [
        SampleProject(
            id=p.id,
            name=p.name,
            description=p.description,
            status=p.status,
            tasks=sum(t.project_id == p.id for t in workspace.tasks),
            open_tasks=sum(t.project_id == p.id and t.status != "done" for t in workspace.tasks),
            checkpoints=sum(c.project_id == p.id for c in workspace.checkpoints),
            notes=sum(n.project_id == p.id for n in workspace.notes),
        )
        for p in workspace.projects
    ]
    open_tasks = sorted(
        (t for t in workspace.tasks if t.status != "done"),
        key=lambda t: (_PRIORITY_ORDER[t.priority], t.due_date or date.max),
    )
    profile = workspace.user_profile
    return DemoAccount(
        demo_account_type=template.account_type,
        name=template.name,
        description=template.description,
        persona=f"{profile.name}, {profile.role}",
        summary=summarize(workspace),
        projects=projects,
        sample_tasks=[t.title for t in open_tasks[:5]],
        sample_checkpoints=[c.title for c in workspace.checkpoints[:3]],
        sample_notes=[n.title for n in workspace.notes[:3]],
    )


class DemoService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        templates: TemplateCatalog,
        codec: TokenCodec,
    ) -> None:
        self.session = session
        self.settings = settings
        self.templates = templates
        self.codec = codec
        self.sessions = DemoSessionRepository(session)
        self.tenants = TenantRepository(session)

    @property
    def session_length(self) -> timedelta:
        return timedelta(minutes=self.settings.DEMO_SESSION_MINUTES)

    @property
    def max_extensions(self) -> int:
        return self.settings.DEMO_SESSION_MAX_EXTENSIONS

    def accounts(self) -> DemoAccounts:
        now = utcnow()
        return DemoAccounts(
            accounts=[describe_template(t, now) for t in self.templates],
            session_minutes=self.settings.DEMO_SESSION_MINUTES,
            max_extensions=self.max_extensions,
        )

    async def create(self, account_type: str) -> DemoSessionCreated:
        template = self.templates.get(account_type)
        if template is None:
            choices = ", ".join(self.templates.account_types)
            raise Unprocessable(
                f"Unknown demo_account_type {account_type!r}; choose one of: {choices}.",
                error="unknown_demo_account_type",
            )
        now = utcnow()
        expires_at = now + self.session_length
        tenant = await self.tenants.add(
            Tenant(name=f"Demo: {template.name}", kind=TenantKind.DEMO, expires_at=expires_at)
        )
        await self.tenants.create_subscription(tenant.id)
        row = await self.sessions.add(
            DemoSession(
                id=new_session_id(),
                tenant_id=tenant.id,
                account_type=template.account_type,
                status=DemoSessionStatus.ACTIVE,
                created_at=now,
                expires_at=expires_at,
                extension_count=0,
                # A fresh structure built from the template: sessions share nothing.
                workspace=template.materialize(now.date()),
            )
        )
        log.info(
            "demo session created",
            extra={
                "session": session_ref(row.id),
                "tenant_id": str(tenant.id),
                "account": account_type,
            },
        )
        return DemoSessionCreated(
            session_id=row.id,
            virtual_tenant_id=tenant.id,
            demo_account_type=row.account_type,
            expires_at=expires_at,
            session_token=self._token(row.id, tenant.id, expires_at, now),
        )

    def _token(
        self, session_id: str, tenant_id: uuid.UUID, expires_at: datetime, now: datetime
    ) -> str:
        ttl = max(expires_at - now, timedelta(seconds=1))
        return self.codec.encode("demo", subject=session_id, ttl=ttl, tid=str(tenant_id)).token

    def info(self, row: DemoSession) -> DemoSessionInfo:
        now = utcnow()
        return DemoSessionInfo(
            session_id=row.id,
            virtual_tenant_id=row.tenant_id,
            demo_account_type=row.account_type,
            status=row.status,
            created_at=row.created_at,
            expires_at=row.expires_at,
            seconds_left=max(0, int((row.expires_at - now).total_seconds())),
            extensions_used=row.extension_count,
            extensions_left=max(0, self.max_extensions - row.extension_count),
            workspace=summarize(Workspace.model_validate(row.workspace)),
        )

    async def _reload(self, session_id: str) -> DemoSession:
        row = await self.session.scalar(
            select(DemoSession)
            .where(DemoSession.id == session_id)
            .execution_options(populate_existing=True)
        )
        if row is None:  # purged while we were looking at it
            raise NotFound("No such demo session.", error="session_not_found")
        return row

    async def extend(self, row: DemoSession) -> DemoSessionExtended:
        # Each failed attempt means another request extended meanwhile, so the loop
        # ends after at most max_extensions + 1 rounds.
        for _ in range(self.max_extensions + 2):
            now = utcnow()
            ensure_live(row, now)
            if row.extension_count >= self.max_extensions:
                raise Conflict(
                    f"This demo session has already been extended {self.max_extensions} "
                    "times, the most allowed. Start a new one with POST /api/v1/demo/sessions.",
                    error="extension_limit_reached",
                )
            new_expiry = row.expires_at + self.session_length
            applied = await self.sessions.extend(
                row.id,
                seen_count=row.extension_count,
                new_expires_at=new_expiry,
                max_extensions=self.max_extensions,
                now=now,
            )
            if applied:
                await self.sessions.set_tenant_expiry(row.tenant_id, new_expiry)
                count = row.extension_count + 1
                return DemoSessionExtended(
                    session_id=row.id,
                    expires_at=new_expiry,
                    extensions_used=count,
                    extensions_left=max(0, self.max_extensions - count),
                    session_token=self._token(row.id, row.tenant_id, new_expiry, now),
                )
            row = await self._reload(row.id)
        raise Conflict("The session changed while extending it; try again.", error="conflict")

    async def end(self, row: DemoSession) -> None:
        if not await self.sessions.end(row.id, utcnow()):
            ensure_live(await self._reload(row.id))
            raise Gone("This demo session was ended.", error="session_ended")
        log.info("demo session ended", extra={"session": session_ref(row.id)})

    def workspace(self, row: DemoSession) -> Workspace:
        return Workspace.model_validate(row.workspace)

    async def apply(self, row: DemoSession, actions: list[Action]) -> Workspace:
        """Apply agent actions to this session's workspace copy (and only to it)."""
        await self.sessions.lock_for_write(row.id)
        row = ensure_live(await self._reload(row.id))
        try:
            updated = apply_actions(row.workspace, actions)
        except ActionError as exc:
            if exc.status == 404:
                raise NotFound(str(exc), error="record_not_found") from exc
            raise Unprocessable(str(exc), error="invalid_action") from exc
        check_workspace_size(
            row.workspace,
            updated,
            max_items=self.settings.DEMO_WORKSPACE_MAX_ITEMS,
            max_bytes=self.settings.DEMO_WORKSPACE_MAX_BYTES,
        )
        await self.sessions.set_workspace(row.id, updated)
        return Workspace.model_validate(updated)

    async def stats(self) -> DemoStats:
        now = utcnow()
        by_status = await self.sessions.count_by_status(now)
        midnight = datetime.combine(now.date(), time(0), tzinfo=UTC)
        created_today = await self.sessions.created_since(midnight)
        lengths = [
            max(0.0, (min(ended_at or expires_at, expires_at, now) - created_at).total_seconds())
            for created_at, expires_at, ended_at in await self.sessions.lifetimes()
        ]
        return DemoStats(
            sessions_by_status=by_status,
            total=sum(by_status.values()),
            created_today=created_today,
            average_length_seconds=round(sum(lengths) / len(lengths), 1) if lengths else None,
        )
