from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, EmailStr, Field, field_validator
from pydantic_core import PydanticCustomError

from app.auth.emails import ConfusableAddress, normalise_email
from app.auth.security import BCRYPT_MAX_BYTES
from app.models import BillingTier


def _normalise_email(value: object) -> object:
    """NFKC and case before the syntax check; look-alike addresses refused (422)."""
    if not isinstance(value, str):
        return value
    try:
        return normalise_email(value)
    except ConfusableAddress as exc:
        raise PydanticCustomError("confusable_email", str(exc)) from exc


def password_fits_bcrypt(value: str) -> str:
    # bcrypt reads only 72 bytes; refusing longer ones beats silently ignoring the rest.
    if len(value.encode()) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8")
    return value


class Credentials(BaseModel):
    email: EmailStr = Field(examples=["ada@example.com"])
    password: str = Field(min_length=1, max_length=1024)

    _email = field_validator("email", mode="before")(_normalise_email)
    _password = field_validator("password")(password_fits_bcrypt)


PASSWORD_MIN_LENGTH = 8


class RegisterRequest(Credentials):
    password: str = Field(
        min_length=PASSWORD_MIN_LENGTH, max_length=1024, examples=["correct horse battery"]
    )


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
    email_verified: bool = False


# --- verification, recovery, password change, sessions --------------------------------


class NewPassword(BaseModel):
    """A new password, under the same rules as at registration."""

    new_password: str = Field(
        min_length=PASSWORD_MIN_LENGTH, max_length=1024, examples=["a longer passphrase"]
    )

    _new_password = field_validator("new_password")(password_fits_bcrypt)


class TokenBody(BaseModel):
    token: str = Field(min_length=1, max_length=256, description="The token from the message.")


class VerifyResult(BaseModel):
    email: str
    email_verified: bool
    is_admin: bool


class ForgotPasswordRequest(BaseModel):
    email: EmailStr = Field(examples=["ada@example.com"])

    _email = field_validator("email", mode="before")(_normalise_email)


class ResetPasswordRequest(NewPassword, TokenBody):
    pass


class ChangePasswordRequest(NewPassword):
    current_password: str = Field(min_length=1, max_length=1024)

    _current_password = field_validator("current_password")(password_fits_bcrypt)


class Accepted(BaseModel):
    status: str = "accepted"
    message: str


class SessionRead(BaseModel):
    id: uuid.UUID = Field(description="The session (refresh family) id.")
    created_at: datetime = Field(description="When the device signed in.")
    last_used_at: datetime = Field(description="The last sign-in or token refresh.")
    user_agent: str | None
    ip_address: str | None
    current: bool = Field(description="The session of the token making this request.")


class SessionList(BaseModel):
    sessions: list[SessionRead]
