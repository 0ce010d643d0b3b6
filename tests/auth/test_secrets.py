"""No published secret signs anything: generated and kept under DATA_DIR outside
production, refused in production."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.auth.security import TokenCodec
from app.config import DEFAULT_JWT_SECRET, LOCAL_SECRETS_FILE, Settings, load_local_secrets
from app.main import create_app
from tests.support.builders import register
from tests.support.settings import make_settings

ROOT = Path(__file__).resolve().parents[2]
GOOD = "a-secret-of-our-own-that-is-long-enough-0123456789"
UNSET = {"JWT_SECRET": "", "FINGERPRINT_SALT": ""}


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def dev_settings(data_dir: Path, **values: object) -> Settings:
    return Settings(_env_file=None, ENV="dev", DATA_DIR=data_dir, **values)  # type: ignore[arg-type]


@pytest.mark.usefixtures("backend")
async def test_dev_secrets_are_private_and_survive_a_restart(database_url, tmp_path):
    data_dir = tmp_path / "data"
    previous = os.umask(0)  # the file must be private whatever the umask
    try:
        first = make_settings(database_url, data_dir, ENV="dev", **UNSET)
    finally:
        os.umask(previous)
    secrets_file = data_dir / LOCAL_SECRETS_FILE
    assert private(secrets_file)
    assert len(first.JWT_SECRET) >= 32 and len(first.FINGERPRINT_SALT) >= 32
    assert first.JWT_SECRET != first.FINGERPRINT_SALT
    assert first.JWT_SECRET not in (DEFAULT_JWT_SECRET, "")

    app = create_app(first)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            account = await register(client)

    # A restart: new settings, new app, same DATA_DIR.
    second = make_settings(database_url, data_dir, ENV="dev", **UNSET)
    assert (second.JWT_SECRET, second.FINGERPRINT_SALT) == (
        first.JWT_SECRET,
        first.FINGERPRINT_SALT,
    )
    app = create_app(second)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            me = await client.get("/api/v1/auth/me", headers=account.headers)
            assert me.status_code == 200, me.text
            refreshed = await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
            )
            assert refreshed.status_code == 200, refreshed.text
    assert private(secrets_file)
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".secrets-")]


def test_configured_secrets_win_over_generated_ones(tmp_path):
    settings = dev_settings(tmp_path, JWT_SECRET=GOOD, FINGERPRINT_SALT="")
    assert settings.JWT_SECRET == GOOD
    assert load_local_secrets(tmp_path)["FINGERPRINT_SALT"] == settings.FINGERPRINT_SALT


def test_placeholders_count_as_unset_outside_production(tmp_path):
    settings = dev_settings(
        tmp_path, JWT_SECRET=DEFAULT_JWT_SECRET, FINGERPRINT_SALT="change-me-fingerprint-salt"
    )
    generated = load_local_secrets(tmp_path)
    assert generated["JWT_SECRET"] == settings.JWT_SECRET
    assert generated["FINGERPRINT_SALT"] == settings.FINGERPRINT_SALT


def test_concurrent_first_starts_agree_on_one_set_of_secrets(tmp_path):
    barrier = threading.Barrier(8)
    results: list[dict[str, str]] = []

    def start() -> None:
        barrier.wait()
        results.append(load_local_secrets(tmp_path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(result == results[0] for result in results)
    assert [p.name for p in tmp_path.iterdir()] == [LOCAL_SECRETS_FILE]


def test_other_processes_see_the_same_secrets(tmp_path):
    """Workers and the CLI are separate processes: they all read the one file."""
    env = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "FINGERPRINT_SALT")}
    env.update({"ENV": "dev", "DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)})
    script = (
        "import hashlib\n"
        "from app.config import Settings\n"
        "s = Settings(_env_file=None)\n"
        "print(hashlib.sha256((s.JWT_SECRET + ' ' + s.FINGERPRINT_SALT).encode()).hexdigest())\n"
    )
    # Started together on an empty DATA_DIR: they race to create the file.
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=env, cwd=tmp_path, stdout=subprocess.PIPE
        )
        for _ in range(3)
    ]
    outputs = {process.communicate(timeout=120)[0].decode().strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    here = dev_settings(tmp_path / "data")
    expected = hashlib.sha256(f"{here.JWT_SECRET} {here.FINGERPRINT_SALT}".encode()).hexdigest()
    assert outputs == {expected}


def test_a_secrets_file_others_can_read_is_refused(tmp_path):
    dev_settings(tmp_path)
    (tmp_path / LOCAL_SECRETS_FILE).chmod(0o644)
    with pytest.raises(ValidationError, match="chmod 600"):
        dev_settings(tmp_path)


def test_a_damaged_secrets_file_is_refused(tmp_path):
    path = tmp_path / LOCAL_SECRETS_FILE
    path.write_text('{"JWT_SECRET": "short"}')
    path.chmod(0o600)
    with pytest.raises(ValidationError, match="damaged"):
        dev_settings(tmp_path)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JWT_SECRET", DEFAULT_JWT_SECRET),
        ("JWT_SECRET", ""),
        ("JWT_SECRET", "short-but-not-a-placeholder"),
        ("FINGERPRINT_SALT", "change-me-fingerprint-salt"),
        ("FINGERPRINT_SALT", "please-change-this-salt"),
        ("FINGERPRINT_SALT", ""),
        ("FINGERPRINT_SALT", "short-but-not-a-placeholder"),
    ],
)
def test_production_refuses_placeholder_and_short_secrets(tmp_path, name, value):
    values = {"JWT_SECRET": GOOD, "FINGERPRINT_SALT": GOOD, name: value}
    with pytest.raises(ValidationError, match=name) as refused:
        Settings(_env_file=None, ENV="prod", DATA_DIR=tmp_path, **values)  # type: ignore[arg-type]
    # The refusal names the setting, never the values of the others.
    assert GOOD not in str(refused.value)
    assert not (tmp_path / LOCAL_SECRETS_FILE).exists()


def test_production_with_real_secrets_generates_nothing(tmp_path):
    settings = Settings(
        _env_file=None, ENV="prod", DATA_DIR=tmp_path, JWT_SECRET=GOOD, FINGERPRINT_SALT=GOOD[::-1]
    )
    assert (GOOD, GOOD[::-1]) == (settings.JWT_SECRET, settings.FINGERPRINT_SALT)
    assert not (tmp_path / LOCAL_SECRETS_FILE).exists()


def test_the_token_codec_never_signs_with_a_published_secret(tmp_path):
    settings = dev_settings(tmp_path)
    with pytest.raises(ValueError, match="published"):
        TokenCodec(settings.model_copy(update={"JWT_SECRET": DEFAULT_JWT_SECRET}))


def test_make_run_listens_on_loopback_unless_told():
    makefile = (ROOT / "Makefile").read_text().splitlines()
    assert "HOST ?= 127.0.0.1" in makefile
