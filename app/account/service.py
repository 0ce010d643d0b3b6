"""The account's data export (a streamed ZIP) and its deletion.

Export (GDPR art. 20): `export.zip` holds `README.txt`, one JSON-lines file per
kind of row the server keeps for the user (profile, workspaces and roles,
subscriptions and credits of the workspaces they own, the credit ledger, storage
and backup metadata, plugin installs, ratings, authored plugins, purchases and
earnings, sessions), the vector payloads, and every stored blob as stored (still
encrypted by the client: the server never had the key). Rows are read through a
streaming cursor and blobs chunk by chunk, and the ZIP is written as it is read
(`stream-zip`): memory stays flat whatever the account holds. Secrets (the password
hash, token hashes) are not exported.

Deletion (GDPR art. 17), after the password is entered again:
1. refused (409 `team_transfer_required`) while the user is the only owner of a team
   that has other members;
2. Stripe subscriptions of the workspaces that go (the personal one, teams where the
   user is alone) are cancelled;
3. blobs (records and backups) and vector points are deleted; the store deletes are
   idempotent, so if a later step fails, deleting again finishes the job;
4. one transaction: the user, their memberships, tokens, sessions, storage and
   backup metadata, installs and ratings go; the credit ledger and revenue rows stay
   with the user's id removed (accounting law); a workspace that goes but has ledger
   rows stays as a nameless shell with no members holding them.
"""

from __future__ import annotations

import enum
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

from sqlalchemy import inspect as sa_inspect
from stream_zip import ZIP_64, async_stream_zip

from app.account.repository import AccountRepository
from app.account.vectors import delete_user_points, user_points
from app.auth.security import PasswordHasher
from app.billing.stripe_client import StripeGateway
from app.db import Database
from app.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from app.models import MembershipRole, TenantKind
from app.models.base import utcnow
from app.storage.blobs import BlobStore, BlobStoreError
from app.storage.vectors import VectorIndex, VectorStoreError

log = logging.getLogger(__name__)

# Never exported: credentials, not data about the person.
SECRET_COLUMNS = frozenset({"password_hash", "token_hash"})
FILE_MODE = 0o600
EXPORT_README = b"""Adiuva account export

Each .jsonl file holds one JSON object per line, one per row the server keeps:
profile, workspaces (with your role), subscriptions, credit_accounts and
credit_ledger of the workspaces you own, storage_usage, storage_records and backups
(metadata), plugin_installs, plugin_ratings, plugins_authored, purchases, earnings,
sessions, plugin_purchases, payout_account, plan_runs, daily_quotas, and vectors
(the points of your vector index, with their payloads).

blobs/records/<table>/<record id> and blobs/backups/<backup id> are your stored
records and backups, byte for byte as your client uploaded them: encrypted with
your key, which the server never had.
"""


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _row_dict(obj: Any) -> dict[str, Any]:
    mapper = sa_inspect(obj).mapper
    return {
        attr.key: _jsonable(getattr(obj, attr.key))
        for attr in mapper.column_attrs
        if attr.key not in SECRET_COLUMNS
    }


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, default=str, ensure_ascii=False).encode() + b"\n"


class AccountService:
    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher,
        blobs: BlobStore,
        vectors: VectorIndex,
        stripe: StripeGateway,
    ) -> None:
        self.db = db
        self.hasher = hasher
        self.blobs = blobs
        self.vectors = vectors
        self.stripe = stripe

    # --- export ------------------------------------------------------------------------

    def export(self, user_id: uuid.UUID) -> AsyncIterator[bytes]:
        """The ZIP, produced while the client reads it."""
        return async_stream_zip(self._members(user_id))

    async def _members(self, user_id: uuid.UUID) -> AsyncIterator[tuple]:
        now = utcnow()
        # One read-only session for the whole stream: it outlives the request's.
        async with self.db.sessionmaker() as session:
            repo = AccountRepository(session)
            owned = await repo.owned_tenants(user_id)

            async def readme() -> AsyncIterator[bytes]:
                yield EXPORT_README

            yield "README.txt", now, FILE_MODE, ZIP_64, readme()
            for name, statement in repo.export_queries(user_id, owned).items():
                yield f"{name}.jsonl", now, FILE_MODE, ZIP_64, self._rows(repo, statement)
            yield "vectors.jsonl", now, FILE_MODE, ZIP_64, self._vectors(user_id)
            queries = repo.export_queries(user_id, owned)
            async for (record,) in repo.stream(queries["storage_records"]):
                name = f"blobs/records/{record.table_name}/{record.id}"
                yield name, record.updated_at, FILE_MODE, ZIP_64, self._blob(record.blob_key)
            async for (backup,) in repo.stream(queries["backups"]):
                name = f"blobs/backups/{backup.id}"
                yield name, backup.created_at, FILE_MODE, ZIP_64, self._blob(backup.blob_key)

    async def _rows(self, repo: AccountRepository, statement: Any) -> AsyncIterator[bytes]:
        async for row in repo.stream(statement):
            data = _row_dict(row[0])
            if len(row) > 1:  # workspaces: the tenant and the user's role in it
                data["role"] = _jsonable(row[1])
            yield _line(data)

    async def _vectors(self, user_id: uuid.UUID) -> AsyncIterator[bytes]:
        async for point in user_points(self.vectors, user_id):
            yield _line(point)

    async def _blob(self, key: str) -> AsyncIterator[bytes]:
        reader = await self.blobs.open(key)
        try:
            async for chunk in reader:
                yield chunk
        finally:
            await reader.aclose()

    # --- deletion ----------------------------------------------------------------------

    async def delete(self, user_id: uuid.UUID, password: str) -> None:
        async with self.db.sessionmaker() as session:
            repo = AccountRepository(session)
            password_hash = await repo.password_hash(user_id)
            if password_hash is None:
                raise NotFound("No such account.", error="account_not_found")
            if not await self.hasher.verify(password, password_hash):
                raise Forbidden("The password is wrong.", error="invalid_password")
            leaving: list[uuid.UUID] = []
            for workspace in await repo.workspaces(user_id):
                sole_owner = workspace.role == MembershipRole.OWNER and not workspace.other_owners
                if workspace.kind == TenantKind.PERSONAL or (
                    sole_owner and not workspace.other_members
                ):
                    leaving.append(workspace.tenant_id)
                elif sole_owner:
                    raise Conflict(
                        "You are the only owner of a team with other members: make another "
                        "member an owner, or delete the team, first.",
                        error="team_transfer_required",
                    )
            subscriptions = await repo.live_subscriptions(leaving)
            keys = await repo.blob_keys(user_id, leaving)
        # Stripe first: if it refuses, nothing is deleted yet.
        for subscription_id in subscriptions:
            await self.stripe.cancel_subscription(subscription_id)
        try:
            for key in keys:
                await self.blobs.delete(key)
            await delete_user_points(self.vectors, user_id)
            for tenant_id in leaving:
                await self.vectors.delete_tenant(tenant_id)
        except (BlobStoreError, VectorStoreError) as exc:
            # The account is still whole in the database: deleting again finishes.
            raise ServiceUnavailable(
                "A storage backend is unavailable; the account was not deleted. Retry later.",
                error="storage_unavailable",
            ) from exc
        async with self.db.sessionmaker() as session, session.begin():
            await AccountRepository(session).forget_user(user_id, leaving)
        log.info(
            "account deleted",
            extra={"user_id": str(user_id), "workspaces": len(leaving), "blobs": len(keys)},
        )
