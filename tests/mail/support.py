"""A real SMTP server for the tests: aiosmtpd in a thread, keeping what it received."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.support.storage import free_port

TOKEN_LINE = re.compile(r"^Token: (\S+)\r?$", re.MULTILINE)


class Inbox:
    """What the server received; optionally also written as .eml files to `directory`."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.messages: list[EmailMessage] = []
        self.refuse_next = 0  # answer the next DATA commands with a temporary failure
        self._lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self._lock:
            if self.refuse_next:
                self.refuse_next -= 1
                return "451 4.3.0 try again later"
            content: bytes = envelope.content  # type: ignore[attr-defined]
            message = email.message_from_bytes(content, policy=email.policy.default)
            self.messages.append(message)  # type: ignore[arg-type]
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
                name = f"{len(self.messages):05d}.eml"
                (self.directory / f".{name}").write_bytes(content)
                (self.directory / f".{name}").rename(self.directory / name)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]


def token_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    match = TOKEN_LINE.search(body.get_content())
    assert match, body.get_content()
    return match.group(1)


def smtp_settings(port: int) -> dict[str, object]:
    return {
        "MAIL_BACKEND": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port,
        "SMTP_STARTTLS": False,
        "SMTP_TIMEOUT_SECONDS": 10,
        "MAIL_FIRST_RETRY_SECONDS": 0.01,
    }


class SMTPServer:
    def __init__(self, inbox: Inbox, port: int) -> None:
        self.inbox = inbox
        self.port = port

    @property
    def settings(self) -> dict[str, object]:
        return smtp_settings(self.port)


def start_smtp(directory: Path | None = None) -> tuple[SMTPServer, Controller]:
    inbox = Inbox(directory)
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return SMTPServer(inbox, port), controller


@pytest.fixture
def smtp_outbox(tmp_path: Path) -> Iterator[tuple[SMTPServer, Path]]:
    """A real SMTP server that also writes what it receives to `tmp_path/outbox`."""
    outbox = tmp_path / "outbox"
    server, controller = start_smtp(outbox)
    try:
        yield server, outbox
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server, controller = start_smtp()
    try:
        yield server
    finally:
        controller.stop()
