"""Debian's Chromium for the browser tests, installed when missing (as root with apt-get)."""

from __future__ import annotations

from tests.support.debian import ensure_command


def chromium() -> str:
    """The Chromium binary; raises `tests.support.debian.Unavailable` if it cannot be had."""
    return ensure_command(("chromium", "chromium-browser"), "chromium")
