"""Registration, login, refresh rotation with reuse detection, logout.

Access tokens carry the user's token version (`ver`). Logout and the revocation of a
refresh family bump it in the same transaction, which ends every access token of the
user at once; other devices keep their refresh tokens and get a token at the new
version on their next refresh.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.repository import RefreshTokenRepository, UserRepository
from app.auth.schemas import AuthTokens
from app.auth.security import InvalidToken, PasswordHasher, TokenCodec, hash_token
from app.config import Settings
from app.errors import Conflict, Unauthorized
from app.models import RefreshToken, User
from app.models.auth import USER_AGENT_MAX
from app.tenants.repository import TenantRepository
from app.tenants.service import create_personal_workspace

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Invalid email or password."
INVALID_REFRESH = "Invalid or expired refresh token."


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who signs in or refreshes, as the sessions list shows it."""

    user_agent: str | None = None
    ip_address: str | None = None

    @classmethod
    def of(cls, user_agent: str | None, ip_address: str | None) -> ClientInfo:
        return cls(user_agent[:USER_AGENT_MAX] if user_agent else None, ip_address)


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        hasher: PasswordHasher,
        codec: TokenCodec,
        client: ClientInfo | None = None,
    ) -> None:
        self.session = session
        self.client = client or ClientInfo()
        self.settings = settings
        self.hasher = hasher
        self.codec = codec
        self.users = UserRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)

    async def register(self, email: str, password: str) -> AuthTokens:
        if await self.users.get_by_email(email) is not None:
            raise Conflict("An account with this email already exists.", error="email_taken")
        password_hash = await self.hasher.hash(password)
        # Never an admin here: registering proves nothing about owning the address.
        # ADMIN_EMAILS applies once the address is verified; until then an operator
        # runs `adiuva promote-admin`.
        user = User(email=email, password_hash=password_hash, is_admin=False, token_version=0)
        try:
            await self.users.add(user)
        except IntegrityError as exc:  # a concurrent registration won the race
            raise Conflict(
                "An account with this email already exists.", error="email_taken"
            ) from exc
        tenant = await create_personal_workspace(self.session, user)
        log.info("user registered", extra={"user_id": str(user.id), "tenant_id": str(tenant.id)})
        return await self._issue(user, tenant.id, family_id=uuid.uuid4())

    async def login(self, email: str, password: str) -> AuthTokens:
        user = await self.users.get_by_email(email)
        # Unknown emails still pay for one bcrypt check, so timing tells nothing.
        valid = await self.hasher.verify(password, user.password_hash if user else None)
        if user is None or not valid or not user.is_active or user.default_tenant_id is None:
            raise Unauthorized(INVALID_CREDENTIALS, error="invalid_credentials")
        return await self._issue(user, user.default_tenant_id, family_id=uuid.uuid4())

    async def refresh(self, refresh_token: str) -> AuthTokens:
        claims = self._refresh_claims(refresh_token)
        now = datetime.now(UTC)
        token_hash = hash_token(refresh_token)
        row = await self.refresh_tokens.rotate(token_hash, now)
        if row is None:
            await self._handle_dead_token(token_hash, now)
            raise Unauthorized(INVALID_REFRESH, error="invalid_token")
        if str(row.user_id) != claims["sub"]:
            raise Unauthorized(INVALID_REFRESH, error="invalid_token")
        # The account may have been deactivated, or the membership removed, since.
        user = await self.users.get(row.user_id)
        if user is None or not user.is_active:
            raise Unauthorized(INVALID_REFRESH, error="invalid_token")
        if await TenantRepository(self.session).member_context(row.user_id, row.tenant_id) is None:
            raise Unauthorized(INVALID_REFRESH, error="invalid_token")
        return await self._issue(user, row.tenant_id, family_id=row.family_id)

    async def logout(self, refresh_token: str) -> None:
        self._refresh_claims(refresh_token)
        row = await self.refresh_tokens.get_by_hash(hash_token(refresh_token))
        if row is None:
            raise Unauthorized(INVALID_REFRESH, error="invalid_token")
        await self.refresh_tokens.revoke_family(row.family_id, datetime.now(UTC))
        await self.users.bump_token_version(row.user_id)

    async def new_session(self, user: User, tenant_id: uuid.UUID) -> AuthTokens:
        """Tokens of a new refresh family (after a password change, for the caller)."""
        return await self._issue(user, tenant_id, family_id=uuid.uuid4())

    def _refresh_claims(self, refresh_token: str) -> dict:
        try:
            return self.codec.decode(refresh_token, "refresh")
        except InvalidToken as exc:
            raise Unauthorized(INVALID_REFRESH, error="invalid_token") from exc

    async def _handle_dead_token(self, token_hash: str, now: datetime) -> None:
        row = await self.refresh_tokens.get_by_hash(token_hash)
        if row is not None and row.rotated_at is not None and row.revoked_at is None:
            # A rotated token came back: it was stolen or replayed. Kill the whole family
            # and every access token of the user (the thief may hold one), and commit
            # now, because the 401 that follows rolls the session back.
            await self.refresh_tokens.revoke_family(row.family_id, now)
            await self.users.bump_token_version(row.user_id)
            await self.session.commit()
            log.warning(
                "refresh token reuse detected; family revoked",
                extra={"user_id": str(row.user_id), "family_id": str(row.family_id)},
            )

    async def _issue(self, user: User, tenant_id: uuid.UUID, *, family_id: uuid.UUID) -> AuthTokens:
        access = self.codec.encode(
            "access",
            str(user.id),
            self.codec.access_ttl,
            tid=str(tenant_id),
            ver=user.token_version,
            # The session (refresh family) it came from: the sessions list marks it current.
            fam=str(family_id),
        )
        refresh = self.codec.encode(
            "refresh", str(user.id), self.codec.refresh_ttl, tid=str(tenant_id), fam=str(family_id)
        )
        await self.refresh_tokens.add(
            RefreshToken(
                user_id=user.id,
                tenant_id=tenant_id,
                family_id=family_id,
                token_hash=hash_token(refresh.token),
                expires_at=refresh.expires_at,
                user_agent=self.client.user_agent,
                ip_address=self.client.ip_address,
            )
        )
        return AuthTokens(
            access_token=access.token, refresh_token=refresh.token, expires_at=access.expires_at
        )
