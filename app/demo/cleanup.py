"""Purging ended demo sessions: their tenant and every row it owns, plus what lives elsewhere.

Deleting a demo tenant cascades to every row that references it (the session,
its subscription, credit rows, storage and backup metadata, …). What lives
outside the database (blobs, vectors) is removed by **cleanup hooks** that
other domains register:

    from app.demo.cleanup import register_cleanup_hook

    async def drop_demo_vectors(session: EndedDemoSession) -> None:
        await vector_store.delete_by_tenant(session.tenant_id)

    register_cleanup_hook(app, drop_demo_vectors)   # e.g. in the domain's lifespan part

A hook is awaited once per ended session, **before** its rows are deleted (so it
can still look them up, e.g. the storage records naming its blob keys), and
must be idempotent: if any hook raises, the session's rows are kept and the
whole session is tried again on the next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from fastapi import FastAPI
from starlette.datastructures import State

from app.db import Database
from app.demo.repository import DemoSessionRepository, EndedDemoSession
from app.demo.session_ref import session_ref
from app.models.base import utcnow

log = logging.getLogger(__name__)

HOOKS_STATE_KEY = "demo_cleanup_hooks"
BATCH_SIZE = 100


class CleanupHook(Protocol):
    """Removes what one domain keeps outside the database for an ended demo session."""

    async def __call__(self, session: EndedDemoSession) -> None: ...


def cleanup_hooks(state: State) -> list[CleanupHook]:
    """The hook list on `app.state` (created on first use, whichever domain starts first)."""
    hooks = getattr(state, HOOKS_STATE_KEY, None)
    if hooks is None:
        hooks = []
        setattr(state, HOOKS_STATE_KEY, hooks)
    return hooks


def register_cleanup_hook(app: FastAPI, hook: CleanupHook) -> None:
    hooks = cleanup_hooks(app.state)
    if hook not in hooks:
        hooks.append(hook)


@dataclass(slots=True)
class CleanupReport:
    marked_expired: int = 0
    purged: int = 0
    failed: int = 0


async def purge_ended_sessions(
    db: Database,
    hooks: Sequence[CleanupHook] = (),
    *,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> CleanupReport:
    """Mark lapsed sessions expired, then purge every expired or deleted session."""
    now = now or utcnow()
    report = CleanupReport()
    async with db.sessionmaker() as session, session.begin():
        report.marked_expired = await DemoSessionRepository(session).mark_expired(now)

    after = ""
    while True:
        async with db.sessionmaker() as session:
            batch = await DemoSessionRepository(session).ended(now, limit=batch_size, after=after)
        if not batch:
            break
        after = batch[-1].session_id
        ready: list[str] = []
        for ended in batch:
            if await _run_hooks(hooks, ended):
                ready.append(ended.session_id)
            else:
                report.failed += 1
        # One short transaction per batch: a pass over many sessions never holds
        # SQLite's write lock for long.
        async with db.sessionmaker() as session, session.begin():
            report.purged += await DemoSessionRepository(session).purge(ready, now)
    if report.purged or report.failed:
        log.info(
            "demo sessions purged",
            extra={
                "marked_expired": report.marked_expired,
                "purged": report.purged,
                "failed": report.failed,
            },
        )
    return report


async def _run_hooks(hooks: Sequence[CleanupHook], ended: EndedDemoSession) -> bool:
    for hook in hooks:
        try:
            await hook(ended)
        except Exception:
            # Keep the rows so the next pass retries this session; other sessions go on.
            log.exception(
                "demo cleanup hook failed",
                extra={
                    "session": session_ref(ended.session_id),
                    "hook": getattr(hook, "__qualname__", type(hook).__name__),
                },
            )
            return False
    return True


__all__ = [
    "CleanupHook",
    "CleanupReport",
    "EndedDemoSession",
    "cleanup_hooks",
    "purge_ended_sessions",
    "register_cleanup_hook",
]
