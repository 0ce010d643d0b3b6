"""The messages we send, in plain text and HTML (`string.Template`; values HTML-escaped).

Every message carries the token twice: in a link to the client's page, and alone on a
line of its own (`Token: …`), for a client that has no page for it (curl, the README).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from string import Template
from urllib.parse import urlencode


@dataclass(frozen=True, slots=True)
class MailTemplate:
    name: str
    subject: str
    text: Template
    html: Template


VERIFY_EMAIL = MailTemplate(
    name="verify_email",
    subject="Confirm your email address",
    text=Template(
        "Hello,\n\n"
        "please confirm that $email is your address by opening this link:\n\n"
        "$link\n\n"
        "or by sending this token to POST /api/v1/auth/verify/confirm:\n\n"
        "Token: $token\n\n"
        "It is valid for $minutes minutes and works once. If you did not create an\n"
        "Adiuva account, ignore this message.\n"
    ),
    html=Template(
        "<p>Hello,</p>"
        "<p>please confirm that <strong>$email</strong> is your address:</p>"
        '<p><a href="$link">Confirm my address</a></p>'
        "<p>Token: <code>$token</code></p>"
        "<p>It is valid for $minutes minutes and works once. If you did not create an "
        "Adiuva account, ignore this message.</p>"
    ),
)

RESET_PASSWORD = MailTemplate(
    name="reset_password",
    subject="Reset your password",
    text=Template(
        "Hello,\n\n"
        "someone (we hope you) asked to reset the password of the Adiuva account\n"
        "$email. Choose a new one here:\n\n"
        "$link\n\n"
        "or send this token with your new password to POST /api/v1/auth/password/reset:\n\n"
        "Token: $token\n\n"
        "It is valid for $minutes minutes and works once. Every device signed in to\n"
        "the account is signed out when the password changes. If you did not ask for\n"
        "this, ignore this message: your password stays as it is.\n"
    ),
    html=Template(
        "<p>Hello,</p>"
        "<p>someone (we hope you) asked to reset the password of the Adiuva account "
        "<strong>$email</strong>.</p>"
        '<p><a href="$link">Choose a new password</a></p>'
        "<p>Token: <code>$token</code></p>"
        "<p>It is valid for $minutes minutes and works once. Every device signed in to "
        "the account is signed out when the password changes. If you did not ask for "
        "this, ignore this message: your password stays as it is.</p>"
    ),
)

PASSWORD_CHANGED = MailTemplate(
    name="password_changed",
    subject="Your password was changed",
    text=Template(
        "Hello,\n\n"
        "the password of the Adiuva account $email was changed, and every device\n"
        "signed in to it was signed out. If this was not you, reset your password at\n\n"
        "$link\n"
    ),
    html=Template(
        "<p>Hello,</p>"
        "<p>the password of the Adiuva account <strong>$email</strong> was changed, and "
        "every device signed in to it was signed out.</p>"
        '<p>If this was not you, <a href="$link">reset your password</a>.</p>'
    ),
)


def link(base_url: str, path: str, **query: str) -> str:
    url = f"{base_url.rstrip('/')}{path}"
    return f"{url}?{urlencode(query)}" if query else url


def render(template: MailTemplate, *, sender: str, to: str, **values: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = template.subject
    message["From"] = sender
    message["To"] = to
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    # Which template, for the logs and the outbox (never the token).
    message["X-Adiuva-Template"] = template.name
    message.set_content(template.text.substitute(values))
    escaped = {key: html.escape(value, quote=True) for key, value in values.items()}
    message.add_alternative(template.html.substitute(escaped), subtype="html")
    return message
