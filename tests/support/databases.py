"""Migrated template databases, cloned per test, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from alembic import command
from alembic.config import Config
from pytest_postgresql.janitor import DatabaseJanitor

from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def migrate(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


class SQLiteTemplate:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"
        migrate(sqlite_url(self.path))

    def clone(self, directory: Path) -> str:
        target = directory / "adiuva.db"
        shutil.copyfile(self.path, target)
        return sqlite_url(target)

    def drop(self, url: str) -> None:
        """Per-test files live in the test's tmp_path; nothing to do."""


class PostgresTemplate:
    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        # A name of its own: pytest may build this session fixture again on the same
        # server (when the order of the backends changes), and test workers share nothing.
        self.name = f"adiuva_template_{uuid.uuid4().hex[:12]}"
        self._janitor(self.name).init()
        migrate(server.url(self.name))

    def _janitor(self, dbname: str, template: str | None = None) -> DatabaseJanitor:
        return DatabaseJanitor(
            user=self.server.user,
            host=self.server.host,
            port=self.server.port,
            dbname=dbname,
            template_dbname=template,
        )

    def clone(self, directory: Path) -> str:
        dbname = f"t_{uuid.uuid4().hex[:16]}"
        self._janitor(dbname, self.name).init()
        return self.server.url(dbname)

    def drop(self, url: str) -> None:
        self._janitor(url.rsplit("/", 1)[1]).drop()
