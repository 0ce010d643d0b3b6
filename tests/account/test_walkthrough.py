"""The README's account walkthrough, run as it stands against a real server.

The server is one `adiuva serve` process; its mail goes through a real SMTP server
(aiosmtpd) that writes each message it receives into the directory the walkthrough
reads as its outbox.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.mail.support import smtp_outbox
from tests.support.servers import base_env, readme_block, start_single

__all__ = ["smtp_outbox"]  # fixture

pytestmark = pytest.mark.usefixtures("backend")


def test_readme_walkthrough(database_url: str, tmp_path: Path, smtp_outbox) -> None:
    smtp, outbox = smtp_outbox
    env = base_env(database_url, tmp_path / "data", **smtp.settings)
    server = start_single(env, tmp_path / "server")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", readme_block("walkthrough")],
            cwd=client_dir,
            env={
                "PATH": os.environ["PATH"],
                "API": f"{server.base_url}/api/v1",
                "OUTBOX": str(outbox),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    output = result.stdout
    assert result.returncode == 0, f"{output}\n{result.stderr}\n{server.log_text()[-3000:]}"
    assert '"email_verified":true' in output
    assert "reset: 204" in output
    assert '"user_agent": "Adiuva Desktop"' in output
    assert '"user_agent": "curl walkthrough"' in output
    assert "profile.jsonl" in output and "credit_ledger.jsonl" in output
    assert "delete: 204" in output
    assert "login after deletion: 401" in output
    # Verification, reset, "password changed": all through SMTP.
    subjects = [m["Subject"] for m in smtp.inbox.messages]
    assert subjects == [
        "Confirm your email address",
        "Reset your password",
        "Your password was changed",
    ]
