"""The invitation message (rendered on the mail sender, like the account messages)."""

from __future__ import annotations

from email.message import EmailMessage
from string import Template

from app.config import Settings
from app.mail import templates
from app.mail.queue import MailJob

INVITATION = templates.MailTemplate(
    name="team_invitation",
    subject="You are invited to join a team on Adiuva",
    text=Template(
        "Hello,\n\n"
        '$inviter invited $email to join the team "$team" on Adiuva as $role.\n'
        "Sign in (or create an account) with this address and open:\n\n"
        "$link\n\n"
        "or send this token to POST /api/v1/invitations/accept:\n\n"
        "Token: $token\n\n"
        "It is valid for $hours hours and works once. If you do not know the sender,\n"
        "ignore this message.\n"
    ),
    html=Template(
        "<p>Hello,</p>"
        "<p>$inviter invited <strong>$email</strong> to join the team "
        "<strong>$team</strong> on Adiuva as $role.</p>"
        '<p><a href="$link">Join the team</a> (signed in with this address)</p>'
        "<p>Token: <code>$token</code></p>"
        "<p>It is valid for $hours hours and works once. If you do not know the sender, "
        "ignore this message.</p>"
    ),
)


def invitation_job(
    settings: Settings, *, email: str, team: str, inviter: str, role: str, token: str
) -> MailJob:
    """The token exists only here and in the message: the database keeps its hash."""

    async def job() -> EmailMessage:
        return templates.render(
            INVITATION,
            sender=settings.MAIL_FROM,
            to=email,
            email=email,
            team=team,
            inviter=inviter,
            role=role,
            token=token,
            hours=str(settings.TEAM_INVITATION_TTL_HOURS),
            link=templates.link(settings.MAIL_LINK_BASE_URL, "/accept-invitation", token=token),
        )

    return job
