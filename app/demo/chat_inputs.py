"""What the chat layer takes from the demo domain (`DemoChatInputs`, on `app.state`).

- `session_context`: inside a demo session, a chat request without a client
  `context` works on the session's own workspace, so the agents' actions name the
  template's ids (`update_record` on `task_hd_copy`, …).
- `canned_answers`: the demo fallback's answer per agent, rendered by the current
  code from the stored demo examples' inputs (`POST /api/v1/demo/examples/init`).

Both read the database once, outside the request's own session: the WebSocket has
none, and neither needs to see uncommitted work.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from app.chat.schemas import ChatContext
from app.db import Database
from app.demo.examples import canned_answers as rendered_canned_answers
from app.demo.repository import DemoExampleRepository, DemoSessionRepository
from app.demo.session_ref import session_ref
from app.errors import ServiceUnavailable
from app.kit.sql import STORE_ERRORS

log = logging.getLogger(__name__)

CHAT_TABLES = ("projects", "tasks", "checkpoints", "notes")


def workspace_context(workspace: dict[str, Any], today: datetime | None = None) -> ChatContext:
    """A session workspace (JSON form) as the `context` a client would send."""
    tables: dict[str, list[dict[str, Any]]] = {
        name: [dict(item) for item in workspace.get(name, [])] for name in CHAT_TABLES
    }
    comments = []
    for task in tables["tasks"]:
        # The agents keep comments in their own table, each naming its task.
        comments.extend({**c, "task_id": task["id"]} for c in task.pop("comments", []) or [])
    return ChatContext.model_validate(
        {"today": (today or datetime.now(UTC)).date(), **tables, "comments": comments}
    )


async def session_context(db: Database, session_id: str) -> ChatContext | None:
    """The live session's workspace as chat context; None if the session is gone.

    503 `demo_unavailable` when the database cannot be read.
    """
    try:
        async with db.sessionmaker() as session:
            workspace = await DemoSessionRepository(session).live_workspace(
                session_id, datetime.now(UTC)
            )
    except STORE_ERRORS as exc:
        # Answering without the workspace would answer a different question.
        log.exception("could not read the demo workspace")
        raise ServiceUnavailable(
            "The demo session's workspace is temporarily unavailable; try again shortly.",
            error="demo_unavailable",
            headers={"Retry-After": "5"},
        ) from exc
    if workspace is None:
        return None
    try:
        return workspace_context(workspace)
    except ValidationError:
        # Only our own validated workspace is stored here; a mismatch with the chat
        # limits is a bug to see in the logs, not the visitor's problem.
        log.exception(
            "demo workspace does not fit the chat context",
            extra={"session": session_ref(session_id)},
        )
        return None


async def canned_answers(db: Database) -> dict[str, str]:
    """Agent → the demo fallback's canned answer; empty when no examples are stored."""
    try:
        async with db.sessionmaker() as session:
            rows = await DemoExampleRepository(session).all()
    except STORE_ERRORS:
        # The fallback still answers, from the demo model alone.
        log.exception("could not read the demo examples")
        return {}
    return await rendered_canned_answers(rows)


class DemoChatInputs:
    """The demo inputs of chat (`app.chat.service.DemoInputs`) over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def session_context(self, session_id: str) -> ChatContext | None:
        return await session_context(self.db, session_id)

    async def canned_answers(self) -> dict[str, str]:
        return await canned_answers(self.db)
