from __future__ import annotations

from pydantic import BaseModel, Field


class DeleteAccountRequest(BaseModel):
    password: str = Field(min_length=1, max_length=1024, description="The current password.")
