"""The demo domain's lifespan part: templates loaded once, the cleanup task supervised."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.config import Settings
from app.demo.chat_inputs import DemoChatInputs
from app.demo.cleanup import CleanupReport, cleanup_hooks, purge_ended_sessions
from app.demo.limits import SessionCreationLimit
from app.demo.templates import load_templates
from app.kit.ratelimit import MovingWindow
from app.kit.tasks import supervised

log = logging.getLogger(__name__)


@asynccontextmanager
async def demo_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    # A broken template file stops start-up here, not a visitor's request later.
    app.state.demo_templates = load_templates()
    app.state.demo_chat_inputs = DemoChatInputs(app.state.db)
    app.state.demo_session_limit = SessionCreationLimit(
        MovingWindow(app.state.limiter_storage),
        settings.DEMO_SESSIONS_PER_IP,
        fail_open=settings.RATE_LIMIT_FAIL_OPEN,
    )
    cleanup_hooks(app.state)

    async def cleanup_pass() -> CleanupReport:
        # Read the hook list each pass: domains may register after this task starts.
        return await purge_ended_sessions(app.state.db, list(cleanup_hooks(app.state)))

    async with supervised(
        "demo session cleanup", cleanup_pass, settings.DEMO_CLEANUP_INTERVAL_SECONDS
    ) as task:
        app.state.demo_cleanup_task = task
        yield
