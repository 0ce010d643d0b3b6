"""Where a message goes: an SMTP server (aiosmtplib), or a file outbox for development."""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib
import anyio.to_thread

from app.config import Settings
from app.models.base import utcnow

log = logging.getLogger(__name__)

OUTBOX_DIR = "outbox"


class MailBackend(Protocol):
    name: str

    async def send(self, message: EmailMessage) -> None:
        """Deliver one message; raise if it did not go out (the queue retries)."""


class OutboxBackend:
    """One `.eml` file per message under `DATA_DIR/outbox`, named so they sort by time."""

    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _write(self, message: EmailMessage) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{utcnow():%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.eml"
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(message.as_bytes())
            # Readers (a developer, a test) never see a half-written message.
            os.replace(temporary, self.directory / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return self.directory / name

    async def send(self, message: EmailMessage) -> None:
        path = await anyio.to_thread.run_sync(self._write, message)
        log.info(
            "mail written to the outbox",
            extra={
                "template": message["X-Adiuva-Template"],
                "to": message["To"],
                "path": str(path),
            },
        )


class SmtpBackend:
    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        self.hostname = settings.SMTP_HOST
        self.port = settings.SMTP_PORT
        self.username = settings.SMTP_USERNAME or None
        self.password = settings.SMTP_PASSWORD or None
        self.start_tls = settings.SMTP_STARTTLS
        self.timeout = settings.SMTP_TIMEOUT_SECONDS

    async def send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message,
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            start_tls=self.start_tls,
            timeout=self.timeout,
        )
        log.info(
            "mail sent",
            extra={"template": message["X-Adiuva-Template"], "to": message["To"]},
        )


def build_backend(settings: Settings) -> MailBackend:
    if settings.MAIL_BACKEND == "smtp":
        return SmtpBackend(settings)
    return OutboxBackend(Path(settings.DATA_DIR) / OUTBOX_DIR)
