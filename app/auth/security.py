"""Passwords (bcrypt, off the event loop) and JWTs (python-jose, algorithm pinned)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
import bcrypt
from cachetools import TLRUCache
from jose import JWTError, jwt

from app.config import PLACEHOLDER_SECRETS, Settings

TokenType = Literal["access", "refresh", "demo"]
BCRYPT_MAX_BYTES = 72


class InvalidToken(Exception):
    """The token is malformed, expired, forged, or of the wrong type."""


class PasswordHasher:
    """bcrypt in a worker thread: one hash is ~0.25 s of CPU at cost 12."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self._dummy_hash: bytes | None = None

    async def hash(self, password: str) -> str:
        hashed = await anyio.to_thread.run_sync(
            bcrypt.hashpw, password.encode(), bcrypt.gensalt(self.rounds)
        )
        return hashed.decode()

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Check a password; with no hash (unknown account) spend the same time and fail."""
        if password_hash is None:
            await anyio.to_thread.run_sync(bcrypt.checkpw, password.encode(), await self._dummy())
            return False
        return await anyio.to_thread.run_sync(
            bcrypt.checkpw, password.encode(), password_hash.encode()
        )

    async def _dummy(self) -> bytes:
        if self._dummy_hash is None:
            self._dummy_hash = await anyio.to_thread.run_sync(
                bcrypt.hashpw, secrets.token_bytes(16), bcrypt.gensalt(self.rounds)
            )
        return self._dummy_hash

    async def warm_up(self) -> None:
        await self._dummy()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


class TokenCodec:
    """Encodes and decodes our JWTs. Only the configured HMAC algorithm is accepted.

    Tokens whose signature verified are kept (bounded, `ACCESS_CACHE_SIZE`), keyed by
    the whole token, until their `exp`: a signed-in request verifies its token once,
    not on every call. A token past `exp` is never answered from the cache; a token
    that failed verification is never kept. Whether the token still holds (user
    active, member, token version) is checked on every request (app/auth/access.py).
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        # Settings replace placeholders with generated secrets (or refuse them in
        # production); this guards against a secret slipped in some other way.
        if settings.JWT_SECRET in PLACEHOLDER_SECRETS:
            raise ValueError("refusing to sign tokens with a published JWT_SECRET")
        self._secret = settings.JWT_SECRET
        self._algorithm = settings.JWT_ALGORITHM
        self.access_ttl = timedelta(minutes=settings.JWT_ACCESS_TOKEN_EXPIRE_MINUTES)
        self.refresh_ttl = timedelta(days=settings.JWT_REFRESH_TOKEN_EXPIRE_DAYS)
        self._clock = clock
        self._lock = threading.Lock()
        self._verified: TLRUCache[str, dict[str, Any]] | None = (
            TLRUCache(settings.ACCESS_CACHE_SIZE, _until_exp, timer=clock)
            if settings.ACCESS_CACHE_SIZE
            else None
        )

    def encode(
        self, token_type: TokenType, subject: str, ttl: timedelta, **claims: Any
    ) -> IssuedToken:
        now = datetime.now(UTC)
        expires_at = now + ttl
        jti = uuid.uuid4().hex
        payload = {
            **claims,
            "sub": subject,
            "type": token_type,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": jti,
        }
        return IssuedToken(
            jwt.encode(payload, self._secret, algorithm=self._algorithm), jti, expires_at
        )

    def decode(self, token: str, expected_type: TokenType) -> dict[str, Any]:
        claims = self._cached(token)
        if claims is None:
            claims = self._verify(token)
        if claims.get("type") != expected_type:
            raise InvalidToken("wrong token type")
        # A copy: the caller may change it, the cached claims stay as verified.
        return dict(claims)

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            # Refuse anything but our algorithm before verifying (no `none`, no RS/HS swap).
            if header.get("alg") != self._algorithm:
                raise InvalidToken("unexpected algorithm")
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                options={"require_exp": True, "require_sub": True, "require_iat": True},
            )
        except JWTError as exc:
            raise InvalidToken(str(exc)) from exc
        # By the codec's clock too (python-jose reads its own), so the cache agrees.
        exp = claims.get("exp")
        if type(exp) is not int or exp <= self._clock():
            raise InvalidToken("token expired")
        if self._verified is not None:
            with self._lock:
                self._verified[token] = claims
        return claims

    def _cached(self, token: str) -> dict[str, Any] | None:
        """The verified claims of `token` if they are cached and it has not expired.

        The cache is not thread-safe (routes' sync dependencies run in threads), hence
        the lock; and `exp` is checked again by the clock, not by the cache's timer.
        """
        if self._verified is None:
            return None
        with self._lock:
            claims = self._verified.get(token)
        if claims is None or claims["exp"] <= self._clock():
            return None
        return claims


def _until_exp(_: str, claims: dict[str, Any], __: float) -> float:
    return claims["exp"]
