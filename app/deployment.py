"""What a deployment must get right before it serves: one set of rules, two callers.

Several worker processes (gunicorn's `--workers`, `WEB_CONCURRENCY`) need stores
that every process shares. Three of the embedded defaults are per process:

- embedded Qdrant (`QDRANT_URL` empty) locks its files: the second worker cannot
  open them and fails to boot;
- the in-memory limiter (`RATE_LIMIT_STORAGE_URI=memory://`) gives each worker
  its own per-minute window, so N workers admit N times the tier limits;
- SQLite (`DATABASE_URL` empty) is a file that one process should own.

`check_deployment()` holds the rules. gunicorn's master applies them before it forks a
worker (`app.server.UvicornWorker.check_config`) and refuses with one log line and the
boot-error status; each worker checks again before it loads the app; `adiuva
check-config` prints the same verdicts for an operator before deploying.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from pydantic import ValidationError

from app.config import Settings


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'problem':<8} {self.name}: {self.message}"


def configured_workers(environ: Mapping[str, str] = os.environ) -> int:
    """gunicorn's own default for `--workers`: `WEB_CONCURRENCY`, else 1."""
    value = environ.get("WEB_CONCURRENCY", "").strip()
    return int(value) if value else 1


def _store(name: str, workers: int, shared: str | None, local: str, why: str, fix: str) -> Check:
    """The verdict on one store: `shared` describes it when every worker shares it;
    otherwise `local` names the per-process store, `why` it cannot serve several
    workers, and `fix` the setting to change."""
    if shared is not None:
        return Check(name, True, shared)
    if workers <= 1:
        return Check(name, True, f"{local}, one process")
    return Check(
        name,
        False,
        f"{local} {why}, and {workers} workers are configured: {fix} "
        "or run one worker (WEB_CONCURRENCY=1)",
    )


def check_deployment(settings: Settings, workers: int) -> list[Check]:
    """One verdict per concern; any verdict that is not ok must stop the deployment."""
    if workers >= 1:
        count = Check("workers", True, f"{workers} worker process{'es' if workers > 1 else ''}")
    else:
        count = Check(
            "workers", False, f"{workers}: set WEB_CONCURRENCY (gunicorn --workers) to 1 or more"
        )
    sqlite = settings.database_url.startswith("sqlite")
    return [
        count,
        _store(
            "database",
            workers,
            None if sqlite else "PostgreSQL (DATABASE_URL), shared by every worker",
            f"SQLite (DATABASE_URL{' empty' if not settings.DATABASE_URL else ''})",
            "is a file for one process",
            "set DATABASE_URL=postgresql+asyncpg://…",
        ),
        _store(
            "vectors",
            workers,
            "Qdrant server (QDRANT_URL), shared by every worker" if settings.QDRANT_URL else None,
            "embedded Qdrant (QDRANT_URL empty)",
            "can be opened by one process only",
            "set QDRANT_URL to a Qdrant server (e.g. http://qdrant:6333)",
        ),
        _store(
            "rate limit",
            workers,
            None
            if settings.RATE_LIMIT_STORAGE_URI.startswith("memory://")
            else "shared store (RATE_LIMIT_STORAGE_URI), one window for every worker",
            "in-memory window (RATE_LIMIT_STORAGE_URI=memory://)",
            f"is one per worker ({workers}× the tier limits)",
            "set RATE_LIMIT_STORAGE_URI=redis://host:6379/0",
        ),
    ]


def check_environment(workers: int) -> list[Check]:
    """The verdicts for the settings this process reads (environment and `.env`).

    Settings that do not load (a placeholder secret in production, a malformed
    value) are one verdict, not a traceback.
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        reasons = "; ".join(
            (f"{'.'.join(str(part) for part in error['loc'])}: " if error["loc"] else "")
            + error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        )
        return [Check("settings", False, reasons)]
    return [Check("settings", True, f"ENV={settings.ENV}"), *check_deployment(settings, workers)]


def refusal(checks: list[Check]) -> str | None:
    """The one line a worker logs when it refuses to start, or None if it may start."""
    problems = [f"{check.name}: {check.message}" for check in checks if not check.ok]
    if not problems:
        return None
    return "refusing to start: " + " | ".join(problems)


def report(workers: int | None = None, out: TextIO | None = None) -> int:
    """`adiuva check-config`: one line per check; 1 if any is a problem."""
    out = out or sys.stdout
    if workers is None:
        try:
            workers = configured_workers()
        except ValueError:
            value = os.environ.get("WEB_CONCURRENCY")
            print(
                Check("workers", False, f"WEB_CONCURRENCY={value!r} is not a number").line(),
                file=out,
            )
            return 1
    checks = check_environment(workers)
    for check in checks:
        print(check.line(), file=out)
    return 0 if all(check.ok for check in checks) else 1
