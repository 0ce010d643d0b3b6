"""Who is calling, as SPEC §3.1 orders it, shared by the rate limiter and the quota gate.

1. a valid access JWT (`Authorization: Bearer`, or `?token=` on the WebSocket) → user + tenant;
2. a demo session (`X-Demo-Session-Id`, or a demo session token in the places an access
   token goes: browsers cannot set a header on a WebSocket, so `?token=` takes it too;
   or the session id in a `/demo/sessions/{id}` path) → that demo tenant;
3. the `demo_session_id` cookie → an anonymous visitor;
4. a browser fingerprint: SHA-256 over User-Agent, client IP, Accept-Language and a
   server-side salt (the inputs are never stored).

A signed-in caller acts in the token's tenant, or in the workspace its `X-Tenant-Id`
header (on the WebSocket, also `?tenant_id=`) names if the caller is a member of it
now (app/tenants/acting.py): the rate limit, the quotas and credits, and every route
then count and act in that one. A team workspace has one rate-limit window for all
its members (`RATE_KEY`), sized per seat by the tier table.

A credential that was presented decides: if it does not hold (a bad signature, an
expired or revoked token, an unknown, expired or ended demo session) the caller is
not anonymous but refused — `credential_refusal()`, a 401 (close 1008 on the
WebSocket) answered by the gateway on every route it limits. Only a request that
presents no credential is anonymous. A session id in the path is the route's own
business (404/410 for a session gone), not a credential of the caller's.

The first anonymous response sets the cookie to the visitor's id, so a visitor
keeps one identity (and one quota) from the first request on.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import bindparam, select

from app.auth.access import AccessLookup, AccessSource
from app.auth.security import InvalidToken, TokenCodec
from app.config import Settings
from app.db import Database, read_once_retried
from app.demo.session_ref import session_in_path
from app.errors import AppError, Unauthorized
from app.kit.client_ip import Network, client_ip
from app.models import DemoSession, DemoSessionStatus, TenantKind
from app.tenants.acting import TENANT_HEADER_KEY, authorize_in, requested_tenant
from app.work import Identity, IdentityKind

COOKIE_NAME = "demo_session_id"
DEMO_HEADER = b"x-demo-session-id"
_VISITOR_ID = re.compile(r"^[0-9a-f]{32,64}$")
# Demo session ids are URL-safe tokens; anything else cannot be one, and is not looked up.
_DEMO_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_DEMO_SESSION = select(DemoSession.tenant_id, DemoSession.status, DemoSession.expires_at).where(
    DemoSession.id == bindparam("session_id")
)
# Where a refused identity keeps why it was refused (`Identity.extra`).
_REFUSAL = "credential_refusal"
_NEW_SESSION = "Start a new one with POST /api/v1/demo/sessions."


class _Refused(Exception):
    """A presented credential that does not hold; carries the 401 to answer with."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


class _RefusedWith(Exception):
    """A credential that holds, asking for what it may not (another's workspace)."""

    def __init__(self, refusal: AppError) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


# Where a team member's requests are counted by the tier rate limit (`Identity.extra`).
RATE_KEY = "rate_key"


_BAD_TOKEN = ("invalid_token", "Invalid or expired access token.")
_UNKNOWN_SESSION = ("invalid_demo_session", "Unknown demo session.")


_COOKIE_KEY = COOKIE_NAME.encode()
_COOKIE_PREFIX = _COOKIE_KEY + b"="
# The only headers identity resolution reads (a request carries many more).
_READ = frozenset(
    (
        b"authorization",
        DEMO_HEADER,
        TENANT_HEADER_KEY,
        b"cookie",
        b"user-agent",
        b"accept-language",
    )
)


_CREDENTIALS = frozenset((b"authorization", DEMO_HEADER, TENANT_HEADER_KEY))
# Marks a request that sent a credential header twice with different values.
_AMBIGUOUS = b"\x00ambiguous"
_AMBIGUOUS_CREDENTIALS = (
    "ambiguous_credentials",
    "Send one Authorization header, and at most one X-Demo-Session-Id and one X-Tenant-Id.",
)


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for key, value in scope.get("headers", ()):
        if key in _READ:
            # Two different credentials: the gateway and the route could each take a
            # different one (FastAPI reads the first), so neither is taken.
            if key in _CREDENTIALS and found.get(key, value) != value:
                found[_AMBIGUOUS] = b""
            found[key] = value
    return found


def _bearer(scope: dict[str, Any], headers: dict[bytes, bytes]) -> str | None:
    """The bearer token presented; "" for an Authorization header that carries none."""
    auth = headers.get(b"authorization")
    if auth is not None:
        scheme, _, token = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return ""  # another scheme, or no token: presented, and not one we accept
    if scope["type"] == "websocket":
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if values and values[0]:
            return values[0]
    return None


def _tenant(scope: dict[str, Any], headers: dict[bytes, bytes]) -> bytes | None:
    """The workspace named by `X-Tenant-Id`, or on the WebSocket by `?tenant_id=` too
    (browsers cannot set a header on a WebSocket)."""
    value = headers.get(TENANT_HEADER_KEY)
    if value is None and scope["type"] == "websocket":
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("tenant_id")
        if values and values[0]:
            return values[0].encode("latin-1")
    return value


def _cookie(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"cookie")
    # Cookie names are not unquoted: without the name in the header, there is no cookie.
    if not raw or _COOKIE_KEY not in raw:
        return None
    if raw.startswith(_COOKIE_PREFIX):  # the usual header: our cookie alone, nothing to parse
        value = raw[len(_COOKIE_PREFIX) :].decode("latin-1")
        if _VISITOR_ID.fullmatch(value):
            return value
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except Exception:  # a malformed Cookie header is the client's problem, not ours
        return None
    morsel = jar.get(COOKIE_NAME)
    if morsel is None or not _VISITOR_ID.match(morsel.value):
        return None
    return morsel.value


def fingerprint(headers: dict[bytes, bytes], ip: str, salt: str) -> str:
    digest = hashlib.sha256()
    for part in (
        headers.get(b"user-agent", b""),
        ip.encode(),
        headers.get(b"accept-language", b""),
        salt.encode(),
    ):
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.hexdigest()


class IdentityResolver:
    def __init__(
        self,
        settings: Settings,
        codec: TokenCodec,
        db: Database,
        trusted: tuple[Network, ...],
        *,
        access: AccessSource | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.db = db
        self.trusted = trusted
        self.access = access if access is not None else AccessLookup(db)

    async def resolve(self, scope: dict[str, Any]) -> Identity:
        headers = _headers(scope)
        ip = client_ip(scope, self.trusted)
        try:
            identity = await self._from_credentials(scope, headers, ip)
        except _Refused as refused:
            return Identity(
                IdentityKind.ANONYMOUS,
                "invalid",
                ip,
                invalid_credentials=True,
                extra={_REFUSAL: (refused.error, refused.message)},
            )
        except _RefusedWith as refused:
            return Identity(
                IdentityKind.ANONYMOUS,
                "invalid",
                ip,
                invalid_credentials=True,
                extra={_REFUSAL: refused.refusal},
            )
        if identity is not None:
            return identity
        visitor = _cookie(headers)
        new_cookie = None
        if visitor is None:
            visitor = fingerprint(headers, ip, self.settings.FINGERPRINT_SALT)
            new_cookie = visitor
        return Identity(IdentityKind.ANONYMOUS, f"anon:{visitor}", ip, new_cookie=new_cookie)

    async def _from_credentials(
        self, scope: dict[str, Any], headers: dict[bytes, bytes], ip: str
    ) -> Identity | None:
        """The caller a presented credential names; None when none was presented."""
        if _AMBIGUOUS in headers:
            raise _Refused(*_AMBIGUOUS_CREDENTIALS)
        token = _bearer(scope, headers)
        if token is not None:
            if not token:
                raise _Refused(*_BAD_TOKEN)
            return await self._from_token(token, ip, _tenant(scope, headers))
        demo_id = headers.get(DEMO_HEADER, b"").strip()
        if demo_id:  # an empty header is no credential
            return await self._from_demo_session(demo_id.decode("latin-1"), ip)
        path_id = session_in_path(scope["path"])
        if path_id is not None:
            try:
                return await self._from_demo_session(path_id, ip)
            except _Refused:
                return None  # the route answers for a session gone (404 / 410)
        return None

    async def _from_token(self, token: str, ip: str, tenant_header: bytes | None) -> Identity:
        try:
            claims = self.codec.decode(token, "access")
        except InvalidToken:
            return await self._from_demo_token(token, ip)
        # A signature is not enough: the user must still exist, be active, belong to the
        # tenant (the token's, or the one X-Tenant-Id names) and hold the token's
        # version. If not, the caller's credentials are invalid (401 / 1008): neither
        # the user nor a fresh anonymous quota.
        try:
            access = await authorize_in(self.access, claims, requested_tenant(tenant_header))
        except AppError as refusal:  # a malformed header, or not a member (400 / 403)
            raise _RefusedWith(refusal) from None
        if access is None:
            raise _Refused(*_BAD_TOKEN)
        extra: dict[str, Any] = {}
        if access.tenant_kind is TenantKind.TEAM:
            # The team's limit (per seat) is the team's, shared by its members.
            extra[RATE_KEY] = f"tenant:{access.tenant_id}"
        return Identity(
            IdentityKind.USER,
            f"user:{access.user_id}",
            ip,
            tier=access.tier,
            seats=access.seats,
            user_id=access.user_id,
            tenant_id=access.tenant_id,
            extra=extra,
        )

    async def _from_demo_token(self, token: str, ip: str) -> Identity:
        try:
            claims = self.codec.decode(token, "demo")
        except InvalidToken:
            raise _Refused(*_BAD_TOKEN) from None
        return await self._from_demo_session(str(claims.get("sub", "")), ip)

    async def _from_demo_session(self, session_id: str, ip: str) -> Identity:
        if not _DEMO_SESSION_ID.match(session_id):
            raise _Refused(*_UNKNOWN_SESSION)
        now = datetime.now(UTC)
        row = await read_once_retried(self.db.engine, _DEMO_SESSION, {"session_id": session_id})
        if row is None:
            raise _Refused(*_UNKNOWN_SESSION)
        tenant_id, status, expires_at = row
        if status == DemoSessionStatus.DELETED:
            raise _Refused("session_ended", f"This demo session was ended. {_NEW_SESSION}")
        if expires_at.tzinfo is None:  # SQLite hands back naive UTC
            expires_at = expires_at.replace(tzinfo=UTC)
        if status != DemoSessionStatus.ACTIVE or expires_at <= now:
            raise _Refused("session_expired", f"This demo session has expired. {_NEW_SESSION}")
        return Identity(
            IdentityKind.DEMO,
            f"demo:{session_id}",
            ip,
            tenant_id=tenant_id,
            demo_session_id=session_id,
        )


def credential_refusal(identity: Identity) -> AppError:
    """The 401 for an identity whose presented credential did not hold (or the 400 / 403
    for a workspace it may not act in)."""
    refusal = identity.extra.get(_REFUSAL, _BAD_TOKEN)
    if isinstance(refusal, AppError):
        return refusal
    error, message = refusal
    return Unauthorized(message, error=error)


def set_cookie_header(value: str, *, secure: bool, max_age_days: int) -> tuple[bytes, bytes]:
    parts = [
        f"{COOKIE_NAME}={value}",
        "Path=/",
        f"Max-Age={max_age_days * 86400}",
        "HttpOnly",
        "SameSite=Lax",
    ]
    if secure:
        parts.append("Secure")
    return b"set-cookie", "; ".join(parts).encode("latin-1")
