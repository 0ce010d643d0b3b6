"""A real PostgreSQL server for the test session, via pytest-postgresql's executor.

PostgreSQL refuses to run as root; when the tests run as root, `pg_ctl` is
called through `runuser -u postgres` on a data directory that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pytest_postgresql.executors.proc import PostgreSQLExecutor

PG_USER = "postgres"


def find_pg_ctl() -> str | None:
    if explicit := os.environ.get("PG_CTL"):
        return explicit
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
        reverse=True,
    )
    return candidates[0] if candidates else shutil.which("pg_ctl")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _runuser_wrapper(pg_ctl: str, directory: Path) -> str:
    wrapper = directory / "pg_ctl"
    wrapper.write_text(f'#!/bin/sh\nexec runuser -u {PG_USER} -- "{pg_ctl}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(wrapper)


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    executor: PostgreSQLExecutor
    base_dir: Path

    def url(self, dbname: str, driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{dbname}"

    def stop(self) -> None:
        try:
            self.executor.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def start_postgres(pg_ctl: str) -> PostgresServer:
    base_dir = Path(tempfile.mkdtemp(prefix="adiuva-pg-"))
    executable = pg_ctl
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_USER)
        os.chown(base_dir, entry.pw_uid, entry.pw_gid)
        wrapper_dir = Path(tempfile.mkdtemp(prefix="adiuva-pgbin-"))
        executable = _runuser_wrapper(pg_ctl, wrapper_dir)
    port = _free_port()
    executor = PostgreSQLExecutor(
        executable=executable,
        host="127.0.0.1",
        port=port,
        datadir=str(base_dir / "data"),
        unixsocketdir=str(base_dir),
        logfile=str(base_dir / "postgresql.log"),
        startparams="-w",
        dbname="postgres",
        user=PG_USER,
        # Tests create and drop many databases: durability buys nothing here.
        postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        "-c max_connections=300",
    )
    executor.start()
    return PostgresServer("127.0.0.1", port, PG_USER, executor, base_dir)
