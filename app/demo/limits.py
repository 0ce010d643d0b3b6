"""What one visitor can take from the demo: sessions per address, and the size of a workspace."""

from __future__ import annotations

import json
import logging
from typing import Any

from app.errors import Conflict, ServiceUnavailable, TooManyRequests
from app.kit.ratelimit import MovingWindow, parse_limit

log = logging.getLogger(__name__)


class SessionCreationLimit:
    """`DEMO_SESSIONS_PER_IP` new sessions per client address, in a moving window.

    Shares the rate limiter's store (memory, or Redis across workers and hosts) and
    its failure policy (`RATE_LIMIT_FAIL_OPEN`).
    """

    def __init__(self, window: MovingWindow, per_ip: str, *, fail_open: bool) -> None:
        self.window = window
        self.item = parse_limit(per_ip)
        self.fail_open = fail_open

    async def check(self, ip: str) -> None:
        try:
            result = await self.window.hit(self.item, "demo", "sessions", "ip", ip)
        except Exception as exc:
            log.warning("demo session limit storage unavailable", extra={"error": repr(exc)})
            if self.fail_open:
                return
            raise ServiceUnavailable("Rate limiter unavailable; try again shortly.") from exc
        if not result.allowed:
            raise TooManyRequests(
                f"Too many demo sessions started from your address (at most {self.item}); "
                f"try again in {result.reset_after} s, or keep using the session you have.",
                error="demo_session_limit",
                retry_after=result.reset_after,
            )


def workspace_items(workspace: dict[str, Any]) -> int:
    """Records in a workspace (JSON form): projects, tasks, their comments, checkpoints, notes."""
    tasks = workspace.get("tasks", [])
    return (
        len(workspace.get("projects", []))
        + len(tasks)
        + sum(len(task.get("comments", [])) for task in tasks)
        + len(workspace.get("checkpoints", []))
        + len(workspace.get("notes", []))
    )


def workspace_bytes(workspace: dict[str, Any]) -> int:
    return len(json.dumps(workspace, separators=(",", ":")).encode())


def check_workspace_size(
    before: dict[str, Any], after: dict[str, Any], *, max_items: int, max_bytes: int
) -> None:
    """409 when a change would take a workspace past a cap; a change that shrinks it passes."""
    items = workspace_items(after)
    if items > max_items and items > workspace_items(before):
        raise Conflict(
            f"This demo workspace is full: at most {max_items} records (projects, tasks, "
            "comments, checkpoints and notes together). Delete some to add more.",
            error="demo_workspace_full",
        )
    size = workspace_bytes(after)
    if size > max_bytes and size > workspace_bytes(before):
        raise Conflict(
            f"This demo workspace is full: at most {max_bytes} bytes of content; this change "
            f"would make it {size}. Shorten or delete some records to add more.",
            error="demo_workspace_full",
        )
