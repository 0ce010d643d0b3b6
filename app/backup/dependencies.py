from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.backup.service import BackupService
from app.billing.dependencies import TiersDep
from app.db import DatabaseDep, SessionDep
from app.kit.deps import SettingsDep
from app.storage.dependencies import BlobStoreDep


async def get_backup_service(
    session: SessionDep,
    db: DatabaseDep,
    store: BlobStoreDep,
    tiers: TiersDep,
    settings: SettingsDep,
) -> BackupService:
    return BackupService(session, db, store, tiers, settings)


BackupServiceDep = Annotated[BackupService, Depends(get_backup_service)]
