from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, EmailStr, Field, field_validator

from app.auth.security import BCRYPT_MAX_BYTES
from app.models import BillingTier


def _normalise_email(value: str) -> str:
    return value.strip().lower()


class Credentials(BaseModel):
    email: EmailStr = Field(examples=["ada@example.com"])
    password: str = Field(min_length=1, max_length=1024)

    _email = field_validator("email")(_normalise_email)

    @field_validator("password")
    @classmethod
    def _fits_bcrypt(cls, value: str) -> str:
        # bcrypt reads only 72 bytes; refusing longer ones beats silently ignoring the rest.
        if len(value.encode()) > BCRYPT_MAX_BYTES:
            raise ValueError(f"password must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8")
        return value


class RegisterRequest(Credentials):
    password: str = Field(min_length=8, max_length=1024, examples=["correct horse battery"])


class LoginRequest(Credentials):
    pass


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class AuthTokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_at: datetime = Field(description="When the access token expires (UTC).")


class UserProfile(BaseModel):
    id: uuid.UUID
    email: str
    tier: BillingTier
    tenant_id: uuid.UUID
    is_admin: bool
