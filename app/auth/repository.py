from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from app.kit.repository import Repository
from app.models import RefreshToken, User


@dataclass(frozen=True, slots=True)
class FamilyRow:
    """One live refresh family (a signed-in device), as the sessions list shows it."""

    family_id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip_address: str | None


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

    async def live_families(self, user_id: uuid.UUID, now: datetime) -> list[FamilyRow]:
        """The user's families holding a usable token, newest use first.

        A family's live token is its newest (each refresh rotates): its creation is
        the family's last use, and its client the one that used it last.
        """
        live = (
            await self.session.execute(
                select(
                    RefreshToken.family_id,
                    RefreshToken.created_at,
                    RefreshToken.user_agent,
                    RefreshToken.ip_address,
                ).where(
                    RefreshToken.user_id == user_id,
                    RefreshToken.rotated_at.is_(None),
                    RefreshToken.revoked_at.is_(None),
                    RefreshToken.expires_at > now,
                )
            )
        ).all()
        if not live:
            return []
        started = dict(
            (
                await self.session.execute(
                    select(RefreshToken.family_id, func.min(RefreshToken.created_at))
                    .where(
                        RefreshToken.user_id == user_id,
                        RefreshToken.family_id.in_([row.family_id for row in live]),
                    )
                    .group_by(RefreshToken.family_id)
                )
            ).all()
        )
        families = [
            FamilyRow(
                row.family_id,
                _aware(started.get(row.family_id, row.created_at)),
                row.created_at,
                row.user_agent,
                row.ip_address,
            )
            for row in live
        ]
        return sorted(families, key=lambda family: family.last_used_at, reverse=True)

    async def revoke_user_family(
        self, user_id: uuid.UUID, family_id: uuid.UUID, now: datetime
    ) -> bool:
        """Revoke one of the user's families; False if the user has no live token in it."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.user_id == user_id,
                RefreshToken.family_id == family_id,
                RefreshToken.revoked_at.is_(None),
                RefreshToken.rotated_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(revoked_at=now)
        )
        if not result.rowcount:
            return False
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return True

    async def revoke_all_of_user(self, user_id: uuid.UUID, now: datetime) -> int:
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return result.rowcount or 0

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )


def _aware(value: datetime) -> datetime:
    # min() over a UTCDateTime column comes back without the type's conversion.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
