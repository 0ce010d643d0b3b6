"""Application settings, read from the environment and an optional `.env` file.

Every variable is listed in `.env.example`. Production (`ENV=prod`) refuses the
placeholder JWT secret and fingerprint salt.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "change-me-in-production"
DEFAULT_FINGERPRINT_SALT = "change-me-fingerprint-salt"

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- core -------------------------------------------------------------
    ENV: Literal["dev", "test", "prod"] = "dev"
    LOG_LEVEL: str = "INFO"
    DATA_DIR: Path = Path("./data")
    DATABASE_URL: str = ""  # empty: SQLite file under DATA_DIR
    DATABASE_POOL_SIZE: int = 10
    DATABASE_MAX_OVERFLOW: int = 20
    CORS_ORIGINS: CommaList = ["app://.", "http://localhost:3000", "http://localhost:5173"]
    TRUSTED_PROXIES: CommaList = []  # IPs or CIDRs whose X-Forwarded-For is believed

    # --- auth ---------------------------------------------------------------
    JWT_SECRET: str = DEFAULT_JWT_SECRET
    JWT_ALGORITHM: Literal["HS256", "HS384", "HS512"] = "HS256"
    JWT_ACCESS_TOKEN_EXPIRE_MINUTES: int = 30
    JWT_REFRESH_TOKEN_EXPIRE_DAYS: int = 30
    BCRYPT_ROUNDS: int = Field(default=12, ge=4, le=16)
    ADMIN_EMAILS: CommaList = []
    AUTH_RATE_LIMIT_PER_IP: str = "30/minute"
    AUTH_RATE_LIMIT_PER_ACCOUNT: str = "10/minute"

    # --- gateway: rate limit, quotas, concurrency ---------------------------
    RATE_LIMIT_STORAGE_URI: str = "memory://"
    RATE_LIMIT_FAIL_OPEN: bool = True
    RATE_LIMIT_FREE_PER_MINUTE: int = 20
    RATE_LIMIT_PRO_PER_MINUTE: int = 60
    RATE_LIMIT_POWER_PER_MINUTE: int = 120
    RATE_LIMIT_TEAM_PER_MINUTE_PER_SEAT: int = 200
    RATE_LIMIT_DAILY_PER_USER: int = 10
    RATE_LIMIT_DAILY_LLM_PER_USER: int = 1
    RATE_LIMIT_DAILY_PER_IP: int = 50
    RATE_LIMIT_DAILY_LLM_PER_IP: int = 3
    RATE_LIMIT_DAILY_FREE: int = 50
    RATE_LIMIT_DAILY_LLM_FREE: int = 20
    RATE_LIMIT_DAILY_PAID: int = 1000
    MAX_CONCURRENT_TASK_TREES: int = 10
    MAX_CONCURRENT_TASK_TREES_PER_USER: int = 1
    MAX_CONCURRENT_FREE: int = 2
    MAX_CONCURRENT_PRO: int = 4
    MAX_CONCURRENT_POWER: int = 8
    MAX_CONCURRENT_TEAM: int = 8
    LEASE_TTL_SECONDS: int = 120
    FINGERPRINT_SALT: str = DEFAULT_FINGERPRINT_SALT
    DEMO_COOKIE_MAX_AGE_DAYS: int = 30

    # --- tier quotas (bytes of cloud storage / backups; -1 = unlimited) ------------
    STORAGE_QUOTA_FREE_BYTES: int = 0
    STORAGE_QUOTA_PRO_BYTES: int = 5 * 1024**3
    STORAGE_QUOTA_POWER_BYTES: int = 25 * 1024**3
    STORAGE_QUOTA_TEAM_BYTES: int = -1
    BACKUP_QUOTA_FREE_BYTES: int = 0
    BACKUP_QUOTA_PRO_BYTES: int = 5 * 1024**3
    BACKUP_QUOTA_POWER_BYTES: int = 25 * 1024**3
    BACKUP_QUOTA_TEAM_BYTES: int = -1
    BATCH_JOBS_FREE: int = 2
    BATCH_JOBS_PRO: int = 10

    # --- credits -------------------------------------------------------------
    CREDITS_PER_USD: int = 1000
    CREDIT_MONTHLY_GRANT_FREE: int = 0
    CREDIT_MONTHLY_GRANT_PRO: int = 5000
    CREDIT_MONTHLY_GRANT_POWER: int = 20000
    CREDIT_MONTHLY_GRANT_TEAM: int = 50000
    CREDIT_RESERVE_ESTIMATE: int = 50

    # --- LLM ------------------------------------------------------------------
    LLM_MODEL: str = "demo"
    LLM_ROUTER_MODEL: str = "demo"
    LLM_API_BASE: str = ""
    LLM_API_KEY: str = ""
    LLM_TIMEOUT_SECONDS: float = 60.0
    WS_PING_INTERVAL_SECONDS: float = 30.0
    WS_MAX_FRAME_BYTES: int = 64 * 1024
    WS_FIRST_FRAME_TIMEOUT_SECONDS: float = 10.0
    WS_MAX_ANONYMOUS_PER_IP: int = 4  # open sockets without an account, per address and worker

    # --- storage ----------------------------------------------------------------
    BLOB_STORE: Literal["file", "s3"] = "file"
    S3_BUCKET: str = ""
    S3_REGION: str = "us-east-1"
    S3_ENDPOINT_URL: str = ""
    AWS_ACCESS_KEY_ID: str = ""
    AWS_SECRET_ACCESS_KEY: str = ""
    MAX_UPLOAD_BYTES: int = 50 * 1024 * 1024
    QDRANT_URL: str = ""
    QDRANT_API_KEY: str = ""
    QDRANT_COLLECTION: str = "adiuva_vectors"
    VECTOR_DIMENSION: int = 32

    # --- billing ------------------------------------------------------------------
    STRIPE_SECRET_KEY: str = ""
    STRIPE_WEBHOOK_SECRET: str = ""
    STRIPE_WEBHOOK_TOLERANCE_SECONDS: int = 300
    STRIPE_PRICE_PRO: str = "price_pro_monthly"
    STRIPE_PRICE_POWER: str = "price_power_monthly"
    STRIPE_PRICE_TEAM: str = "price_team_monthly"
    STRIPE_SUCCESS_URL: str = "http://localhost:5173/billing/success"
    STRIPE_CANCEL_URL: str = "http://localhost:5173/billing/cancel"
    # Empty: Stripe's own API. Set to point the client at a proxy or a local stand-in.
    STRIPE_API_BASE: str = ""

    # --- demo -----------------------------------------------------------------------
    DEMO_SESSION_MINUTES: int = 30
    DEMO_SESSION_MAX_EXTENSIONS: int = 3
    DEMO_CLEANUP_INTERVAL_SECONDS: float = 300  # 0 turns the in-app task off (cron only)

    # --- observability ------------------------------------------------------------
    METRICS_TOKEN: str = ""

    _split = field_validator("CORS_ORIGINS", "TRUSTED_PROXIES", "ADMIN_EMAILS", mode="before")(
        _split_commas
    )

    @field_validator("ADMIN_EMAILS")
    @classmethod
    def _normalise_admins(cls, value: list[str]) -> list[str]:
        return [email.strip().lower() for email in value]

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.ENV == "prod" and self.JWT_SECRET == DEFAULT_JWT_SECRET:
            raise ValueError("JWT_SECRET must be set to a real secret when ENV=prod")
        if self.ENV == "prod" and len(self.JWT_SECRET) < 32:
            raise ValueError("JWT_SECRET must be at least 32 characters when ENV=prod")
        if self.ENV == "prod" and self.FINGERPRINT_SALT in ("", DEFAULT_FINGERPRINT_SALT):
            raise ValueError("FINGERPRINT_SALT must be set to a real secret when ENV=prod")
        return self

    @cached_property
    def database_url(self) -> str:
        if self.DATABASE_URL:
            return self.DATABASE_URL
        return f"sqlite+aiosqlite:///{(self.DATA_DIR / 'adiuva.db').resolve()}"

    @property
    def is_prod(self) -> bool:
        return self.ENV == "prod"

    def ensure_data_dir(self) -> None:
        self.DATA_DIR.mkdir(parents=True, exist_ok=True)
