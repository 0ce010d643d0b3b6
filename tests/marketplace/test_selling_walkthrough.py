"""The README's "Selling a plugin" walkthrough, run as it stands against a real server
in stub mode (its mail through a real SMTP server, for the admin's verification)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.mail.support import smtp_outbox
from tests.support.billing import WEBHOOK_SECRET
from tests.support.servers import base_env, readme_block, start_single

__all__ = ["smtp_outbox"]  # fixture

pytestmark = pytest.mark.usefixtures("backend")

ADMIN_EMAIL = "marketplace-admin@example.com"


def test_readme_selling_walkthrough(database_url: str, tmp_path: Path, smtp_outbox) -> None:
    smtp, outbox = smtp_outbox
    env = base_env(
        database_url,
        tmp_path / "data",
        STRIPE_SECRET_KEY="",
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        ADMIN_EMAILS=ADMIN_EMAIL,
        **smtp.settings,
    )
    server = start_single(env, tmp_path / "server")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", readme_block("selling")],
            cwd=client_dir,
            env={
                "PATH": os.environ["PATH"],
                "API": f"{server.base_url}/api/v1",
                "OUTBOX": str(outbox),
                "ADMIN_EMAIL": ADMIN_EMAIL,
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    output = result.stdout
    assert result.returncode == 0, f"{output}\n{result.stderr}\n{server.log_text()[-3000:]}"
    lines = output.splitlines()
    assert lines[0] == "pending_review"
    assert "stub_account=acct_stub_" in lines[1]
    assert lines[2] == "approved"
    assert lines[3] == "power"
    assert lines[4] == "install: 202"
    assert json.loads(lines[5]) == {"received": True, "duplicate": False}
    installed = json.loads(lines[6])
    assert installed["installed"] is True and installed["install_count"] == 1
    earnings = json.loads("\n".join(lines[7:]))
    (line,) = earnings["plugins"]
    assert (line["plugin_id"], line["sales"], line["amount_cents"]) == ("focus-timer", 1, 499)
    assert (line["developer_share_cents"], line["platform_share_cents"]) == (349, 150)
    assert earnings["payouts"] == [
        {"status": "stubbed", "currency": "EUR", "sales": 1, "developer_share_cents": 349}
    ]
