from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class BackupInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    version: str
    timestamp: datetime = Field(validation_alias="backup_timestamp")
    checksum: str
    size_bytes: int
    created_at: datetime


class BackupHistory(BaseModel):
    items: list[BackupInfo]
    total: int
    page: int
    limit: int
