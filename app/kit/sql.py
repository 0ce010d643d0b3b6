"""Dialect-aware pieces for the atomic upserts our counters rely on."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession


def upsert(session: AsyncSession, table: Any) -> Any:
    """`INSERT` supporting `.on_conflict_do_update/nothing` for the session's dialect."""
    dialect = session.bind.dialect.name if session.bind is not None else "postgresql"
    return (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)


# What an unreachable or failing database raises (asyncpg may surface raw OSErrors).
STORE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)
