"""Operator commands: `adiuva serve`, `adiuva promote-admin EMAIL`, `adiuva check-config`
(before deploying), and for cron `adiuva demo-cleanup` and `adiuva maintenance`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy import update

from app.config import Settings
from app.db import Database
from app.demo.cleanup import CleanupReport, cleanup_hooks, purge_ended_sessions
from app.main import create_app
from app.models import User


async def promote_admin(settings: Settings, email: str) -> bool:
    db = Database(settings.database_url, settings)
    try:
        async with db.sessionmaker() as session, session.begin():
            result = await session.execute(
                update(User).where(User.email == email.strip().lower()).values(is_admin=True)
            )
            return result.rowcount == 1
    finally:
        await db.dispose()


async def cleanup_once(settings: Settings) -> CleanupReport:
    """One cleanup pass for cron (`adiuva demo-cleanup`), with every domain's hooks.

    The app's lifespan is run so that each domain registers its cleanup hooks
    (blobs, vectors) exactly as in the server; the in-app task stays off.
    """
    app = create_app(settings.model_copy(update={"DEMO_CLEANUP_INTERVAL_SECONDS": 0}))
    async with app.router.lifespan_context(app):
        return await purge_ended_sessions(app.state.db, list(cleanup_hooks(app.state)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adiuva", description="Adiuva Cloud API operations")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="serve the API (one uvicorn process, graceful shutdown on SIGTERM)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--graceful-timeout",
        type=int,
        default=25,
        help="seconds open streams and in-flight requests get to finish on shutdown",
    )
    promote = commands.add_parser("promote-admin", help="give an existing user the admin flag")
    promote.add_argument("email")
    commands.add_parser(
        "demo-cleanup", help="purge expired and ended demo sessions with everything they own"
    )
    commands.add_parser(
        "maintenance",
        help="prune old quota counters and expired leases, sweep orphaned upload staging files",
    )
    check = commands.add_parser(
        "check-config", help="check the settings for a deployment; non-zero exit on a problem"
    )
    check.add_argument(
        "--workers", type=int, help="worker processes to check for (default: WEB_CONCURRENCY or 1)"
    )
    args = parser.parse_args(argv)
    if args.command == "check-config":
        from app.deployment import report

        return report(args.workers)
    if args.command == "serve":
        # Imported here: the server pulls in the whole app, the other commands need little.
        from app.server import serve as run_server

        run_server(args.host, args.port, graceful_timeout=args.graceful_timeout)
        return 0

    settings = Settings()
    if args.command == "promote-admin":
        if asyncio.run(promote_admin(settings, args.email)):
            print(f"{args.email} is now an admin")
            return 0
        print(f"no user with email {args.email}", file=sys.stderr)
        return 1
    if args.command == "demo-cleanup":
        report = asyncio.run(cleanup_once(settings))
        print(
            f"demo sessions purged: {report.purged}, marked expired: {report.marked_expired}, "
            f"failed (kept for the next pass): {report.failed}"
        )
        return 1 if report.failed else 0
    if args.command == "maintenance":
        from app.maintenance import maintenance_once

        done = asyncio.run(maintenance_once(settings))
        print(
            f"quota counters pruned: {done.counters_pruned}, expired leases deleted: "
            f"{done.leases_deleted}, staging files swept: {done.staging_files_swept}"
        )
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
