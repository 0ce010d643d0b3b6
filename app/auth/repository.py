from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update

from app.kit.repository import Repository
from app.models import RefreshToken, User


class UserRepository(Repository[User]):
    model = User

    async def get_by_email(self, email: str) -> User | None:
        return await self.get_one_or_none(select(User).where(User.email == email))

    async def bump_token_version(self, user_id: uuid.UUID) -> None:
        """End every access token the user holds (they carry the old version)."""
        await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(token_version=User.token_version + 1)
            .execution_options(synchronize_session=False)
        )


class RefreshTokenRepository(Repository[RefreshToken]):
    model = RefreshToken

    async def rotate(self, token_hash: str, now: datetime) -> RefreshToken | None:
        """Mark a live token rotated and return it; None if it was not live.

        One conditional UPDATE, so two concurrent refreshes of the same token
        cannot both succeed.
        """
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.rotated_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(rotated_at=now)
            .returning(RefreshToken.id)
        )
        token_id = result.scalar_one_or_none()
        return await self.get(token_id) if token_id is not None else None

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        return await self.get_one_or_none(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        )

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
