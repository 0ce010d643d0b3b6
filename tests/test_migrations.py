"""The models and the migration history describe the same schema."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Base, Plugin
from tests.support.databases import alembic_config


async def _diff(url: str) -> list:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


@pytest.mark.usefixtures("backend")
async def test_autogenerate_finds_no_difference(database_url):
    assert await _diff(database_url) == []


@pytest.mark.usefixtures("backend")
async def test_seed_plugins_present(database_url):
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(Plugin.id, Plugin.price_cents, Plugin.category, Plugin.status)
                )
            ).all()
    finally:
        await engine.dispose()
    assert {(r.id, r.price_cents, r.category, r.status.value) for r in rows} == {
        ("github-sync", 0, "productivity", "approved"),
        ("slack-notifier", 499, "communication", "approved"),
        ("time-tracker", 999, "productivity", "approved"),
    }


@pytest.mark.usefixtures("backend")
def test_downgrade_to_base_and_back(database_url):
    from alembic import command

    config = alembic_config(database_url)
    command.downgrade(config, "base")
    command.upgrade(config, "head")


@pytest.mark.usefixtures("backend")
async def test_alembic_version_is_head(database_url):
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            version = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar()
    finally:
        await engine.dispose()
    assert version == "011"
