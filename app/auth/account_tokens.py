"""Mailed single-use tokens (verification, password reset): random, hashed, expiring.

The token itself (32 random bytes, URL-safe) exists only in the message; the database
keeps its SHA-256. Redeeming one is a single conditional UPDATE (unused, unexpired,
right purpose), so two concurrent redemptions cannot both succeed. Issuing a token
deletes the user's earlier ones of the same purpose: only the newest message works.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update

from app.auth.security import hash_token
from app.kit.repository import Repository
from app.models import AccountToken, AccountTokenPurpose
from app.models.base import utcnow

TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class Redeemed:
    user_id: uuid.UUID
    email: str


class AccountTokenRepository(Repository[AccountToken]):
    model = AccountToken

    async def issue(
        self, user_id: uuid.UUID, email: str, purpose: AccountTokenPurpose, ttl: timedelta
    ) -> str:
        now = utcnow()
        await self.session.execute(
            delete(AccountToken).where(
                AccountToken.user_id == user_id,
                or_(AccountToken.purpose == purpose.value, AccountToken.expires_at <= now),
            )
        )
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self.session.add(
            AccountToken(
                user_id=user_id,
                purpose=purpose.value,
                token_hash=hash_token(token),
                email=email,
                expires_at=now + ttl,
            )
        )
        await self.session.flush()
        return token

    async def redeem(self, token: str, purpose: AccountTokenPurpose) -> Redeemed | None:
        """Use the token up; who it was for, or None if it is unknown, used or expired."""
        digest = hash_token(token)
        now: datetime = utcnow()
        row = (
            await self.session.execute(
                update(AccountToken)
                .where(
                    AccountToken.token_hash == digest,
                    AccountToken.purpose == purpose.value,
                    AccountToken.used_at.is_(None),
                    AccountToken.expires_at > now,
                )
                .values(used_at=now)
                .returning(AccountToken.token_hash, AccountToken.user_id, AccountToken.email)
            )
        ).one_or_none()
        # The index found the row by its hash; compare once more in constant time, so
        # that no path answers by a byte-wise comparison of secrets.
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return Redeemed(row.user_id, row.email)

    async def revoke(self, user_id: uuid.UUID, purpose: AccountTokenPurpose) -> None:
        """Every outstanding token of this purpose for the user stops working."""
        await self.session.execute(
            delete(AccountToken).where(
                AccountToken.user_id == user_id, AccountToken.purpose == purpose.value
            )
        )

    async def delete_for_user(self, user_id: uuid.UUID) -> int:
        result = await self.session.execute(
            delete(AccountToken).where(AccountToken.user_id == user_id)
        )
        return result.rowcount or 0
