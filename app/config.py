"""Application settings, read from the environment and an optional `.env` file.

Every variable is listed in `.env.example`. No published secret ever signs
anything: production (`ENV=prod`) refuses placeholder and short values of
`JWT_SECRET` and `FINGERPRINT_SALT`; development and tests, when they are unset,
use secrets generated once for this installation and kept under `DATA_DIR`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "change-me-in-production"
# Values that were ever published as defaults (in this code, .env.example, docker-compose):
# anyone can sign or fingerprint with them, so they count as unset.
PLACEHOLDER_SECRETS = frozenset(
    {"", DEFAULT_JWT_SECRET, "change-me-fingerprint-salt", "please-change-this-salt"}
)
MIN_SECRET_LENGTH = 32
GENERATED_SECRETS = ("JWT_SECRET", "FINGERPRINT_SALT")
LOCAL_SECRETS_FILE = "secrets.json"

CommaList = Annotated[list[str], NoDecode]
# What VERIFIED_EMAIL_REQUIRED_FOR may name (app/auth/verification.py enforces them).
VERIFIABLE_FEATURES = ("checkout", "plugin_submission")

# Origins of pages without one of their own (a file, a sandboxed iframe): `null`, and
# `file://` as older Electron sent it. Allowed without credentials (app/gateway/cors.py).
OPAQUE_ORIGINS = frozenset({"null", "file://"})
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s]+")


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # A refused setting must not print the other settings (secrets among them).
        hide_input_in_errors=True,
    )

    # --- core -------------------------------------------------------------
    ENV: Literal["dev", "test", "prod"] = "dev"
    LOG_LEVEL: str = "INFO"
    DATA_DIR: Path = Path("./data")
    DATABASE_URL: str = ""  # empty: SQLite file under DATA_DIR
    DATABASE_POOL_SIZE: int = 10
    DATABASE_MAX_OVERFLOW: int = 20
    # Origins whose pages may call the API (README: CORS and the Electron renderer): the
    # packaged renderer's custom scheme, dev servers, and `null` for a renderer loaded
    # from a file (opaque origins never get credentials nor the visitor cookie).
    CORS_ORIGINS: CommaList = [
        "app://.",
        "http://localhost:5173",
        "http://127.0.0.1:5173",
        "http://localhost:3000",
        "http://127.0.0.1:3000",
        "null",
    ]
    # Also allowed: origins this regular expression matches whole (empty: none), e.g.
    # `http://(localhost|127\.0\.0\.1):\d+` for dev servers on any port.
    CORS_ORIGIN_REGEX: str = ""
    TRUSTED_PROXIES: CommaList = []  # IPs or CIDRs whose X-Forwarded-For is believed

    # --- auth ---------------------------------------------------------------
    # Empty: generated once under DATA_DIR outside production (see load_local_secrets).
    JWT_SECRET: str = ""
    JWT_ALGORITHM: Literal["HS256", "HS384", "HS512"] = "HS256"
    JWT_ACCESS_TOKEN_EXPIRE_MINUTES: int = 30
    JWT_REFRESH_TOKEN_EXPIRE_DAYS: int = 30
    BCRYPT_ROUNDS: int = Field(default=12, ge=4, le=16)
    # Promoted once they prove they own the address (email verification); a bare
    # registration never makes an admin. Until then: `adiuva promote-admin EMAIL`.
    ADMIN_EMAILS: CommaList = []
    AUTH_RATE_LIMIT_PER_IP: str = "30/minute"
    AUTH_RATE_LIMIT_PER_ACCOUNT: str = "10/minute"
    # Per-worker caches of callers (user, membership, tenant tier) and of verified access
    # tokens; 0 turns both off. Entries also lapse after the TTL (a bound for writes the
    # invalidation cannot see: another process on SQLite).
    ACCESS_CACHE_SIZE: int = Field(default=10_000, ge=0)
    ACCESS_CACHE_TTL_SECONDS: float = Field(default=300, gt=0)

    # Features that need a verified address (403 `email_unverified` otherwise), from
    # VERIFIABLE_FEATURES. Empty (the default): none; production wants both.
    VERIFIED_EMAIL_REQUIRED_FOR: CommaList = []
    EMAIL_VERIFY_TOKEN_MINUTES: int = Field(default=24 * 60, ge=1)
    PASSWORD_RESET_TOKEN_MINUTES: int = Field(default=30, ge=1)
    # Routes that send mail (verify/request, password/forgot), per client address and per
    # email address or account; routes that accept a token or a password (verify/confirm,
    # password/reset, password/change, account deletion), per address and per account.
    ACCOUNT_MAIL_RATE_LIMIT_PER_IP: str = "20/hour"
    ACCOUNT_MAIL_RATE_LIMIT_PER_ACCOUNT: str = "5/hour"
    ACCOUNT_TOKEN_RATE_LIMIT_PER_IP: str = "30/minute"
    ACCOUNT_TOKEN_RATE_LIMIT_PER_ACCOUNT: str = "10/minute"
    # Team invitations: how long a mailed token is good for; how many a user may send
    # (per client address and per inviting user); how many may be pending per team.
    TEAM_INVITATION_TTL_HOURS: int = Field(default=72, ge=1)
    TEAM_INVITATION_RATE_LIMIT_PER_IP: str = "60/hour"
    TEAM_INVITATION_RATE_LIMIT_PER_USER: str = "30/hour"
    TEAM_MAX_PENDING_INVITATIONS: int = Field(default=50, ge=1)

    # --- mail -----------------------------------------------------------------
    # outbox: one .eml file per message under DATA_DIR/outbox (development); smtp: SMTP_*.
    MAIL_BACKEND: Literal["outbox", "smtp"] = "outbox"
    MAIL_FROM: str = "Adiuva <no-reply@adiuva.localhost>"
    # Where the links in messages point (the client's verify / reset pages).
    MAIL_LINK_BASE_URL: str = "http://localhost:5173"
    SMTP_HOST: str = "localhost"
    SMTP_PORT: int = 587
    SMTP_USERNAME: str = ""
    SMTP_PASSWORD: str = ""
    SMTP_STARTTLS: bool = True
    SMTP_TIMEOUT_SECONDS: float = 30.0
    MAIL_MAX_ATTEMPTS: int = Field(default=5, ge=1)
    MAIL_FIRST_RETRY_SECONDS: float = Field(default=2.0, gt=0)
    MAIL_QUEUE_SIZE: int = Field(default=1000, ge=1)
    # At shutdown, how long queued messages may take to go out before they are dropped.
    MAIL_DRAIN_SECONDS: float = Field(default=10.0, ge=0)

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
    # PostgreSQL: false commits admissions and releases without waiting for the WAL
    # flush (synchronous_commit=off); a database crash may then lose the last moments'.
    QUOTA_SYNCHRONOUS_COMMIT: bool = False
    FINGERPRINT_SALT: str = ""  # empty: generated like JWT_SECRET
    DEMO_COOKIE_MAX_AGE_DAYS: int = 30

    # --- request size caps (SPEC §12.6), enforced before a body is read whole ---
    MAX_JSON_BODY_BYTES: int = Field(default=1024 * 1024, ge=1)  # every non-upload route
    MAX_WEBHOOK_BODY_BYTES: int = Field(default=512 * 1024, ge=1)  # the Stripe webhook
    MAX_HEADER_BYTES: int = Field(default=32 * 1024, ge=1024)  # request line + headers; 431

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
    # Plan runs: how long a finished run's step outputs stay in its worker's memory, and
    # how long a plan from `execution_mode: plan` can be run after it was issued.
    PLAN_RUN_OUTPUT_TTL_SECONDS: float = Field(default=3600, gt=0)
    ISSUED_PLAN_TTL_SECONDS: float = Field(default=86400, gt=0)

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
    # Providers a caller's own key (X-LLM-API-KEY) may name: hosted ones by default.
    BYOK_PROVIDERS: CommaList = [
        "openai",
        "anthropic",
        "gemini",
        "mistral",
        "groq",
        "deepseek",
        "xai",
        "together_ai",
        "fireworks_ai",
        "perplexity",
        "cerebras",
        "openrouter",
    ]
    # JSON {"provider": "base URL"}: where BYOK calls of that provider go (e.g. a proxy).
    # Unlisted: the provider's own endpoint; never LLM_API_BASE.
    BYOK_API_BASES: dict[str, str] = {}
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
    # How long a sync cursor stays valid; deletions' tombstones are kept a day longer.
    SYNC_TOMBSTONE_RETENTION_DAYS: int = Field(default=90, ge=1)
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
    # Where Stripe's customer portal sends the customer back to.
    STRIPE_PORTAL_RETURN_URL: str = "http://localhost:5173/billing"
    # Stripe Connect onboarding (POST /api/v1/developers/connect): where Stripe sends the
    # developer when onboarding is done, and when its link has expired.
    STRIPE_CONNECT_RETURN_URL: str = "http://localhost:5173/developers/payouts"
    STRIPE_CONNECT_REFRESH_URL: str = "http://localhost:5173/developers/payouts?refresh=1"
    # The payout job: pays pending and failed developer shares (0 turns it off).
    PAYOUT_RETRY_INTERVAL_SECONDS: float = 300
    # Empty: Stripe's own API. Set to point the client at a proxy or a local stand-in.
    STRIPE_API_BASE: str = ""

    # --- demo -----------------------------------------------------------------------
    DEMO_SESSION_MINUTES: int = 30
    DEMO_SESSION_MAX_EXTENSIONS: int = 3
    DEMO_CLEANUP_INTERVAL_SECONDS: float = 300  # 0 turns the in-app task off (cron only)
    DEMO_SESSIONS_PER_IP: str = "10/hour"  # session creation per client address
    DEMO_WORKSPACE_MAX_ITEMS: int = 500  # records in one session's workspace (comments too)
    DEMO_WORKSPACE_MAX_BYTES: int = 256 * 1024  # one session's workspace as JSON

    # --- maintenance ----------------------------------------------------------------
    MAINTENANCE_INTERVAL_SECONDS: float = 3600  # 0 turns the in-app task off (cron only)
    STAGING_MAX_AGE_SECONDS: float = 3600  # an upload staging file older than this is orphaned

    # --- observability ------------------------------------------------------------
    METRICS_TOKEN: str = ""

    _split = field_validator(
        "CORS_ORIGINS",
        "TRUSTED_PROXIES",
        "ADMIN_EMAILS",
        "BYOK_PROVIDERS",
        "VERIFIED_EMAIL_REQUIRED_FOR",
        mode="before",
    )(_split_commas)

    @field_validator("CORS_ORIGINS")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        origins = []
        for raw in value:
            # Browsers send scheme and host in lower case, and never a path.
            origin = raw.lower()
            if origin.endswith("/") and not origin.endswith("://"):
                origin = origin[:-1]
            if origin == "*":
                raise ValueError(
                    "CORS_ORIGINS cannot be `*`: list the origins (with credentials allowed, "
                    "`*` would let every site act with a visitor's cookie)"
                )
            if origin not in OPAQUE_ORIGINS and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"CORS_ORIGINS: {raw!r} is not an origin (`scheme://host[:port]`, "
                    "`null` or `file://`)"
                )
            origins.append(origin)
        return origins

    @field_validator("CORS_ORIGIN_REGEX")
    @classmethod
    def _check_origin_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"CORS_ORIGIN_REGEX is not a regular expression: {exc}") from exc
        return value

    @field_validator("ADMIN_EMAILS")
    @classmethod
    def _normalise_admins(cls, value: list[str]) -> list[str]:
        return [email.strip().lower() for email in value]

    @field_validator("VERIFIED_EMAIL_REQUIRED_FOR")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(VERIFIABLE_FEATURES))
        if unknown:
            raise ValueError(
                f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(VERIFIABLE_FEATURES)}"
            )
        return value

    @model_validator(mode="after")
    def _no_published_secrets(self) -> Settings:
        if self.ENV == "prod":
            for name in GENERATED_SECRETS:
                value = getattr(self, name)
                if value in PLACEHOLDER_SECRETS:
                    raise ValueError(
                        f"{name} must be set to a secret of your own when ENV=prod "
                        "(e.g. `openssl rand -hex 32`); the default is published"
                    )
                if len(value) < MIN_SECRET_LENGTH:
                    raise ValueError(
                        f"{name} must be at least {MIN_SECRET_LENGTH} characters when ENV=prod"
                    )
            return self
        unset = [name for name in GENERATED_SECRETS if getattr(self, name) in PLACEHOLDER_SECRETS]
        if unset:
            local = load_local_secrets(self.DATA_DIR)
            for name in unset:
                setattr(self, name, local[name])
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


def load_local_secrets(data_dir: Path) -> dict[str, str]:
    """This installation's own JWT secret and fingerprint salt, generated on first use.

    Kept in `DATA_DIR/secrets.json` (mode 0600) so tokens survive restarts and every
    worker and CLI command sees the same values. The file is written under a private
    temporary name and hard-linked into place: it is never readable by others, never
    seen half-written, and when several processes start at once the first link wins
    and everyone reads its values.
    """
    path = data_dir / LOCAL_SECRETS_FILE
    try:
        try:
            return _read_local_secrets(path)
        except FileNotFoundError:
            pass
        data_dir.mkdir(parents=True, exist_ok=True)
        values = {name: secrets.token_urlsafe(48) for name in GENERATED_SECRETS}
        # mkstemp creates the file with O_EXCL and mode 0600, whatever the umask.
        fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".secrets-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(values, file)
                file.flush()
                os.fsync(file.fileno())
            # Another process may have got there first: then its values are the ones.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
        return _read_local_secrets(path)
    except OSError as exc:
        raise ValueError(
            f"cannot keep generated secrets in {path} ({exc.strerror or exc}); "
            "set JWT_SECRET and FINGERPRINT_SALT instead"
        ) from exc


def _read_local_secrets(path: Path) -> dict[str, str]:
    with open(path, encoding="utf-8") as file:
        mode = os.fstat(file.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(
                f"{path} is accessible to other users; run `chmod 600 {path}` "
                "(or delete it: new secrets are generated and everyone signs in again)"
            )
        try:
            values = json.load(file)
        except json.JSONDecodeError:
            values = None
    if not isinstance(values, dict) or not all(
        isinstance(values.get(name), str) and len(values[name]) >= MIN_SECRET_LENGTH
        for name in GENERATED_SECRETS
    ):
        raise ValueError(
            f"{path} is damaged; delete it to generate new secrets (everyone signs in again)"
        )
    return {name: values[name] for name in GENERATED_SECRETS}
