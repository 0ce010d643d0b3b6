"""A real `redis-server` for the tests, via pytest-redis's executor.

Installed from Debian's packages by the test setup when it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pytest_redis.executor.process import RedisExecutor

from tests.support.postgres import _free_port


def ensure_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            "redis-server is not installed and cannot be installed from here: "
            "install Debian's `redis-server` package"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
        check=True,
        env=env,
        capture_output=True,
    )
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server still missing after installing it")
    return found


def start_redis() -> RedisExecutor:
    executor = RedisExecutor(
        executable=ensure_redis_server(),
        databases=4,
        redis_timeout=30,
        loglevel="warning",
        host="127.0.0.1",
        port=_free_port(),
        datadir=Path(tempfile.mkdtemp(prefix="adiuva-redis-")),
    )
    executor.start()
    return executor
