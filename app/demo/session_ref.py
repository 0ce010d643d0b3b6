"""How logs and stores name a demo session: a short hash, never the id (a bearer credential)."""

from __future__ import annotations

import hashlib
import re

# The session routes put the id in the path: /api/v1/demo/sessions/{id}[/...].
_SESSION_IN_PATH = re.compile(r"(/demo/sessions/)(?!current(?:/|$))([^/]+)")


def session_ref(session_id: str) -> str:
    """A stable, non-reversible name for a session in logs (`ds_` + 12 hex digits)."""
    return "ds_" + hashlib.sha256(session_id.encode()).hexdigest()[:12]


def session_in_path(path: str) -> str | None:
    """The demo session id a `/demo/sessions/{id}[/...]` path names, if any."""
    match = _SESSION_IN_PATH.search(path)
    return match.group(2) if match else None


def redact_session_path(path: str) -> str:
    """The path with a demo session id in it replaced by the session's log name."""
    return _SESSION_IN_PATH.sub(lambda m: m.group(1) + session_ref(m.group(2)), path)
