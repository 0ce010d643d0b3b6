"""The demo domain's lifespan part: templates loaded once, the cleanup task supervised."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.datastructures import State

from app.config import Settings
from app.db import Database
from app.demo.cleanup import CleanupReport, cleanup_hooks, purge_ended_sessions
from app.demo.limits import SessionCreationLimit
from app.demo.templates import load_templates
from app.kit.ratelimit import MovingWindow

log = logging.getLogger(__name__)


async def cleanup_forever(state: State, db: Database, interval: float) -> None:
    """Purge ended sessions every `interval` seconds; a failed pass is logged, not fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            # Read the hook list each pass: domains may register after this task starts.
            await purge_ended_sessions(db, list(cleanup_hooks(state)))
        except Exception:
            log.exception("demo cleanup pass failed; retrying next interval")


def _report_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("demo cleanup task stopped", exc_info=task.exception())


@asynccontextmanager
async def demo_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    # A broken template file stops start-up here, not a visitor's request later.
    app.state.demo_templates = load_templates()
    app.state.demo_session_limit = SessionCreationLimit(
        MovingWindow(app.state.limiter_storage),
        settings.DEMO_SESSIONS_PER_IP,
        fail_open=settings.RATE_LIMIT_FAIL_OPEN,
    )
    cleanup_hooks(app.state)
    task: asyncio.Task[None] | None = None
    if settings.DEMO_CLEANUP_INTERVAL_SECONDS > 0:
        task = asyncio.create_task(
            cleanup_forever(app.state, app.state.db, settings.DEMO_CLEANUP_INTERVAL_SECONDS),
            name="demo-session-cleanup",
        )
        task.add_done_callback(_report_exit)
    app.state.demo_cleanup_task = task
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            # Waits for the task to finish; its outcome was already logged by _report_exit.
            await asyncio.gather(task, return_exceptions=True)


async def cleanup_once(settings: Settings) -> CleanupReport:
    """One cleanup pass for cron (`adiuva demo-cleanup`), with every domain's hooks.

    The app's lifespan is run so that each domain registers its cleanup hooks
    (blobs, vectors) exactly as in the server; the in-app task stays off.
    """
    # Imported here: app.main imports this module for its lifespan part.
    from app.main import create_app

    app = create_app(settings.model_copy(update={"DEMO_CLEANUP_INTERVAL_SECONDS": 0}))
    async with app.router.lifespan_context(app):
        return await purge_ended_sessions(app.state.db, list(cleanup_hooks(app.state)))
