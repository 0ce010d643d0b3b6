"""Mail goes out through a real SMTP server, off the request path, with retries."""

from __future__ import annotations

import email
import email.policy
import logging

import pytest

from app.mail import templates
from app.mail.backends import OutboxBackend
from app.mail.queue import Mailer
from tests.mail.support import SMTPServer, token_of
from tests.support.builders import register


@pytest.fixture
def settings_overrides(smtp_server: SMTPServer) -> dict[str, object]:
    return smtp_server.settings


async def test_verification_mail_goes_through_smtp(app, client, smtp_server):
    account = await register(client)
    response = await client.post("/api/v1/auth/verify/request", headers=account.headers)
    assert response.status_code == 202, response.text
    await app.state.mailer.join()

    (message,) = smtp_server.inbox.to(account.email)
    assert message["Subject"] == "Confirm your email address"
    assert message["X-Adiuva-Template"] == "verify_email"
    token = token_of(message)
    html = message.get_body(("html",)).get_content()
    assert f"token={token}" in html
    assert f"<code>{token}</code>" in html


async def test_refused_delivery_is_retried(app, client, smtp_server):
    account = await register(client)
    smtp_server.inbox.refuse_next = 2
    response = await client.post("/api/v1/auth/verify/request", headers=account.headers)
    assert response.status_code == 202
    await app.state.mailer.join()
    assert len(smtp_server.inbox.to(account.email)) == 1
    assert app.state.mailer.sent == 1


@pytest.mark.usefixtures("backend")
async def test_gives_up_after_the_last_attempt(tmp_path, smtp_server, caplog):
    from app.mail.backends import SmtpBackend
    from tests.support.settings import make_settings

    settings = make_settings("sqlite://", tmp_path, **smtp_server.settings)
    mailer = Mailer(SmtpBackend(settings), max_attempts=3, first_retry=0.01, queue_size=10)
    smtp_server.inbox.refuse_next = 3
    message = templates.render(
        templates.PASSWORD_CHANGED,
        sender="a@example.com",
        to="b@example.com",
        email="b@example.com",
        link="http://x",
    )

    async def job():
        return message

    import asyncio

    runner = asyncio.create_task(mailer.run())
    try:
        with caplog.at_level(logging.WARNING):
            assert mailer.submit("password_changed", job)
            await mailer.join()
    finally:
        runner.cancel()
    assert mailer.failed == 1 and mailer.sent == 0
    assert smtp_server.inbox.messages == []
    assert "giving up" in caplog.text


async def test_outbox_writes_one_file_per_message_and_logs_no_token(tmp_path, caplog):
    outbox = OutboxBackend(tmp_path / "outbox")
    message = templates.render(
        templates.RESET_PASSWORD,
        sender="Adiuva <no-reply@example.com>",
        to="ada@example.com",
        email="ada@example.com",
        token="s3cr3t-token-value",
        minutes="30",
        link="http://localhost/reset?token=s3cr3t-token-value",
    )
    with caplog.at_level(logging.INFO, logger="app.mail"):
        await outbox.send(message)
        await outbox.send(message)
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 2
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert token_of(parsed) == "s3cr3t-token-value"
    assert "mail written to the outbox" in caplog.text
    assert all("s3cr3t" not in str(r.__dict__) for r in caplog.records)


def test_html_values_are_escaped():
    message = templates.render(
        templates.PASSWORD_CHANGED,
        sender="a@example.com",
        to="b@example.com",
        email="<script>@example.com",
        link="http://x/?a=1&b=2",
    )
    html = message.get_body(("html",)).get_content()
    assert "&lt;script&gt;" in html and "a=1&amp;b=2" in html
    assert "<script>@example.com" in message.get_body(("plain",)).get_content()
