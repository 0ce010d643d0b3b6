from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from app.auth.schemas import password_fits_bcrypt


class DeleteAccountRequest(BaseModel):
    password: str = Field(min_length=1, max_length=1024, description="The current password.")

    _password = field_validator("password")(password_fits_bcrypt)
