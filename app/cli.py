"""Operator commands: `adiuva promote-admin EMAIL`, `adiuva demo-cleanup` (for cron)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy import update

from app.config import Settings
from app.db import Database
from app.demo.tasks import cleanup_once
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adiuva", description="Adiuva Cloud API operations")
    commands = parser.add_subparsers(dest="command", required=True)
    promote = commands.add_parser("promote-admin", help="give an existing user the admin flag")
    promote.add_argument("email")
    commands.add_parser(
        "demo-cleanup", help="purge expired and ended demo sessions with everything they own"
    )
    args = parser.parse_args(argv)

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
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
