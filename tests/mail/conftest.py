from __future__ import annotations

from tests.mail.support import smtp_server

__all__ = ["smtp_server"]
