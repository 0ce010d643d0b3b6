"""Dialect-aware pieces for the atomic upserts our counters rely on, and the one-statement path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession


def upsert(session: AsyncSession, table: Any) -> Any:
    """`INSERT` supporting `.on_conflict_do_update/nothing` for the session's dialect."""
    dialect = session.bind.dialect.name if session.bind is not None else "postgresql"
    return (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)


# What an unreachable or failing database raises (asyncpg may surface raw OSErrors).
STORE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)


class StoreError(SQLAlchemyError):
    """The driver failed on the one-statement path (a store error, like SQLAlchemy's own)."""


@asynccontextmanager
async def driver_connection(engine: AsyncEngine, what: str) -> AsyncIterator[Any]:
    """The asyncpg connection of a pooled connection, for one statement it prepares once.

    Each call is one `Bind/Execute/Sync` of a statement asyncpg prepared once on that
    connection (its statement cache), outside any transaction block: a function call
    is its own transaction, with no BEGIN or COMMIT round trip. A failure is raised as
    `StoreError` (`what` names the statement); a connection left in an unknown state
    is discarded, not handed out again.
    """
    async with engine.connect() as connection:
        pooled = await connection.get_raw_connection()
        try:
            yield pooled.driver_connection
        except Exception as exc:
            if not _answered_by_the_server(exc):
                await _discard(connection)
            raise StoreError(f"{type(exc).__name__} in {what}") from exc
        except BaseException:
            # Cancelled mid-statement: the connection's state is unknown.
            await _discard(connection)
            raise


def _answered_by_the_server(exc: Exception) -> bool:
    """An error PostgreSQL reported on a connection that stays usable."""
    import asyncpg  # the PostgreSQL driver; SQLite deployments never get here

    return isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.PostgresConnectionError
    )


async def _discard(connection: AsyncConnection) -> None:
    with anyio.CancelScope(shield=True):
        await connection.invalidate()
