"""The small base every repository shares; repositories are the only place SQL lives."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Base

M = TypeVar("M", bound=Base)


class Repository(Generic[M]):
    model: type[M]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, id_: Any) -> M | None:
        return await self.session.get(self.model, id_)

    async def get_one_or_none(self, statement: Select[tuple[M]]) -> M | None:
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def add(self, obj: M, *, flush: bool = True) -> M:
        self.session.add(obj)
        if flush:
            await self.session.flush()
        return obj

    async def delete(self, obj: M) -> None:
        await self.session.delete(obj)
        await self.session.flush()

    async def paginate(
        self, statement: Select[tuple[M]], *, page: int, limit: int
    ) -> tuple[list[M], int]:
        """One page of `statement` (1-based) and the total row count."""
        total = await self.session.scalar(
            select(func.count()).select_from(statement.order_by(None).subquery())
        )
        rows = await self.session.scalars(statement.limit(limit).offset((page - 1) * limit))
        return list(rows), int(total or 0)
