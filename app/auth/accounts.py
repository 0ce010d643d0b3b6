"""Email verification, password recovery and change, and the sessions of an account.

Mail never goes out on the request path: a route queues a job on the mailer
(app/mail/queue.py) and answers. The job runs on the mail sender with a session of
its own: it looks the user up, issues the token, commits, then renders the message.

`POST /auth/password/forgot` answers the same, at the same speed, whether or not the
address has an account: the route does nothing but queue the job, which is the same
job either way; whether an account exists is looked up only on the sender, where
the caller cannot time it.

A password reset or change ends every session of the user: every refresh family is
revoked and the token version bumped, which ends every access token at once (the
callers' cache sees the change through the users triggers, app/auth/invalidation.py).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from email.message import EmailMessage

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.account_tokens import AccountTokenRepository
from app.auth.emails import ConfusableAddress, normalise_email
from app.auth.repository import RefreshTokenRepository, UserRepository
from app.auth.schemas import SessionList, SessionRead, VerifyResult
from app.auth.security import PasswordHasher
from app.config import Settings
from app.db import Database
from app.errors import BadRequest, Conflict, Forbidden, NotFound
from app.mail import templates
from app.mail.queue import Mailer, MailJob
from app.models import AccountTokenPurpose, User
from app.models.base import utcnow

log = logging.getLogger(__name__)

INVALID_TOKEN = "This token is invalid, used or expired; ask for a new message."
FORGOT_ANSWER = (
    "If an account uses this address, a message with a reset token is on its way. "
    "The token is valid for {minutes} minutes."
)


def admin_addresses(settings: Settings) -> frozenset[str]:
    addresses = set()
    for address in settings.ADMIN_EMAILS:
        try:
            addresses.add(normalise_email(address))
        except ConfusableAddress:
            log.warning("an ADMIN_EMAILS entry mixes scripts; ignored")
    return frozenset(addresses)


class AccountMail:
    """The mail jobs: each runs later, on the mail sender, in a transaction of its own."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def verification(self, user_id: uuid.UUID) -> MailJob:
        minutes = self.settings.EMAIL_VERIFY_TOKEN_MINUTES

        async def job() -> EmailMessage | None:
            async with self.db.sessionmaker() as session, session.begin():
                user = await UserRepository(session).get(user_id)
                if user is None or not user.is_active or user.email_verified_at is not None:
                    return None
                token = await AccountTokenRepository(session).issue(
                    user.id,
                    user.email,
                    AccountTokenPurpose.VERIFY_EMAIL,
                    timedelta(minutes=minutes),
                )
                email = user.email
            return self._render(templates.VERIFY_EMAIL, email, "/verify-email", token, minutes)

        return job

    def password_reset(self, email: str) -> MailJob:
        minutes = self.settings.PASSWORD_RESET_TOKEN_MINUTES

        async def job() -> EmailMessage | None:
            async with self.db.sessionmaker() as session, session.begin():
                user = await UserRepository(session).get_by_email(email)
                if user is None or not user.is_active:
                    return None
                token = await AccountTokenRepository(session).issue(
                    user.id,
                    user.email,
                    AccountTokenPurpose.RESET_PASSWORD,
                    timedelta(minutes=minutes),
                )
            return self._render(templates.RESET_PASSWORD, email, "/reset-password", token, minutes)

        return job

    def password_changed(self, email: str) -> MailJob:
        async def job() -> EmailMessage | None:
            return templates.render(
                templates.PASSWORD_CHANGED,
                sender=self.settings.MAIL_FROM,
                to=email,
                email=email,
                link=templates.link(self.settings.MAIL_LINK_BASE_URL, "/forgot-password"),
            )

        return job

    def _render(
        self, template: templates.MailTemplate, email: str, path: str, token: str, minutes: int
    ) -> EmailMessage:
        return templates.render(
            template,
            sender=self.settings.MAIL_FROM,
            to=email,
            email=email,
            token=token,
            minutes=str(minutes),
            link=templates.link(self.settings.MAIL_LINK_BASE_URL, path, token=token),
        )


class AccountService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        hasher: PasswordHasher,
        mailer: Mailer,
        mail: AccountMail,
    ) -> None:
        self.session = session
        self.settings = settings
        self.hasher = hasher
        self.mailer = mailer
        self.mail = mail
        self.users = UserRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)
        self.tokens = AccountTokenRepository(session)

    # --- verification ----------------------------------------------------------------

    async def request_verification(self, user_id: uuid.UUID) -> str:
        user = await self._user(user_id)
        if user.email_verified_at is not None:
            raise Conflict("This address is already verified.", error="email_already_verified")
        self.mailer.submit(templates.VERIFY_EMAIL.name, self.mail.verification(user.id))
        return f"A message with a verification token is on its way to {user.email}."

    async def confirm_verification(self, token: str) -> VerifyResult:
        redeemed = await self.tokens.redeem(token, AccountTokenPurpose.VERIFY_EMAIL)
        user = await self.users.get(redeemed.user_id) if redeemed else None
        # A token proves the address it was sent to, not one the account moved to since.
        if redeemed is None or user is None or not user.is_active or user.email != redeemed.email:
            raise BadRequest(INVALID_TOKEN, error="invalid_token")
        self._mark_verified(user)
        await self.session.flush()
        log.info("email verified", extra={"user_id": str(user.id), "is_admin": user.is_admin})
        return VerifyResult(email=user.email, email_verified=True, is_admin=user.is_admin)

    def _mark_verified(self, user: User) -> None:
        if user.email_verified_at is None:
            user.email_verified_at = utcnow()
        # ADMIN_EMAILS takes effect only here, once the mailbox is proven.
        if not user.is_admin and user.email in admin_addresses(self.settings):
            user.is_admin = True
            log.warning(
                "admin granted to a verified ADMIN_EMAILS address",
                extra={"user_id": str(user.id)},
            )

    # --- recovery and change ---------------------------------------------------------

    def forgot_password(self, email: str) -> str:
        # The same job whether or not the address has an account (module docstring).
        self.mailer.submit(templates.RESET_PASSWORD.name, self.mail.password_reset(email))
        return FORGOT_ANSWER.format(minutes=self.settings.PASSWORD_RESET_TOKEN_MINUTES)

    async def reset_password(self, token: str, new_password: str) -> None:
        redeemed = await self.tokens.redeem(token, AccountTokenPurpose.RESET_PASSWORD)
        user = await self.users.get(redeemed.user_id) if redeemed else None
        if redeemed is None or user is None or not user.is_active or user.email != redeemed.email:
            raise BadRequest(INVALID_TOKEN, error="invalid_token")
        await self._set_password(user, new_password)
        # The token came by mail to this address: that proves the mailbox too.
        self._mark_verified(user)
        log.info("password reset", extra={"user_id": str(user.id)})

    async def change_password(
        self, user_id: uuid.UUID, current_password: str, new_password: str
    ) -> User:
        user = await self._user(user_id)
        if not await self.hasher.verify(current_password, user.password_hash):
            raise Forbidden("The current password is wrong.", error="invalid_password")
        await self._set_password(user, new_password)
        # The version was bumped by an UPDATE; the caller's new tokens need it.
        await self.session.refresh(user)
        log.info("password changed", extra={"user_id": str(user.id)})
        return user

    async def _set_password(self, user: User, new_password: str) -> None:
        user.password_hash = await self.hasher.hash(new_password)
        await self.session.flush()
        # A reset link mailed before this change must not undo it (someone who read the
        # mailbox once would take the account back).
        await self.tokens.revoke(user.id, AccountTokenPurpose.RESET_PASSWORD)
        await self._end_all_sessions(user.id)
        self.mailer.submit(templates.PASSWORD_CHANGED.name, self.mail.password_changed(user.email))

    # --- sessions --------------------------------------------------------------------

    async def sessions(self, user_id: uuid.UUID, current: uuid.UUID | None) -> SessionList:
        families = await self.refresh_tokens.live_families(user_id, utcnow())
        return SessionList(
            sessions=[
                SessionRead(
                    id=family.family_id,
                    created_at=family.created_at,
                    last_used_at=family.last_used_at,
                    user_agent=family.user_agent,
                    ip_address=family.ip_address,
                    current=family.family_id == current,
                )
                for family in families
            ]
        )

    async def end_session(self, user_id: uuid.UUID, family_id: uuid.UUID) -> None:
        # Another user's session id is as unknown as a made-up one.
        if not await self.refresh_tokens.revoke_user_family(user_id, family_id, utcnow()):
            raise NotFound("No such session.", error="session_not_found")
        # Access tokens carry no family: ending one session ends every access token;
        # the other sessions get new ones on their next refresh.
        await self.users.bump_token_version(user_id)

    async def end_all_sessions(self, user_id: uuid.UUID) -> None:
        await self._end_all_sessions(user_id)

    async def _end_all_sessions(self, user_id: uuid.UUID) -> None:
        await self.refresh_tokens.revoke_all_of_user(user_id, utcnow())
        await self.users.bump_token_version(user_id)

    async def _user(self, user_id: uuid.UUID) -> User:
        user = await self.users.get(user_id)
        if user is None:  # get_principal checked it on this request; deleted since
            raise NotFound("No such account.", error="account_not_found")
        return user
