"""The settings every test app and test server starts from."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
FINGERPRINT_SALT = "test-fingerprint-salt-0123456789"


def test_values(database_url: str, data_dir: Path, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "ENV": "test",
        "DATABASE_URL": database_url,
        "DATA_DIR": data_dir,
        "JWT_SECRET": JWT_SECRET,
        "FINGERPRINT_SALT": FINGERPRINT_SALT,
        "BCRYPT_ROUNDS": 4,
        "AUTH_RATE_LIMIT_PER_IP": "1000/minute",
        "AUTH_RATE_LIMIT_PER_ACCOUNT": "1000/minute",
        "LOG_LEVEL": "WARNING",
    }
    values.update(overrides)
    return values


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    return Settings(_env_file=None, **test_values(database_url, data_dir, **overrides))  # type: ignore[arg-type]
