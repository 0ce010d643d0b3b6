"""One rule for the timestamps clients send: Unix seconds, Unix milliseconds or ISO 8601.

JavaScript clients send `Date.now()` (milliseconds), other clients Unix seconds or
an ISO 8601 date-time. A bare number is told apart by its size:

- below 100 000 000 000 (1e11) it is **seconds** (1e11 s is the year 5138);
- from 1e11 on it is **milliseconds** (1e11 ms is 1973-03-03).

A fraction is allowed (up to 6 digits). An ISO 8601 value without a zone is taken
as UTC. Whatever the form, the instant must lie in [1970-01-01, 2100-01-01) UTC:
anything else (a microsecond count, a negative number, year 9999) is refused with
422 rather than stored as an absurd date.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from app.errors import Unprocessable

MILLISECONDS_FROM = 100_000_000_000
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
FORMATS = (
    "Unix seconds (e.g. 1700000000), Unix milliseconds (e.g. 1700000000000, "
    "as `Date.now()` gives) or ISO 8601 (e.g. 2026-01-31T12:00:00Z); "
    "numbers of 100000000000 and more are milliseconds"
)
_NUMBER = re.compile(r"^\d{1,16}(\.\d{1,6})?$")


def parse_client_timestamp(text: str, *, field: str, error: str = "invalid_timestamp") -> datetime:
    """A UTC datetime from seconds, milliseconds or ISO 8601; 422 `error` otherwise."""
    value = text.strip()
    try:
        if _NUMBER.fullmatch(value):
            number = float(value)
            seconds = number / 1000 if number >= MILLISECONDS_FROM else number
            parsed = datetime.fromtimestamp(seconds, UTC)
        else:
            parsed = datetime.fromisoformat(value)
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise Unprocessable(f"{field} must be {FORMATS}.", error=error) from exc
    if not EARLIEST <= parsed < LATEST:
        raise Unprocessable(
            f"{field} is out of range: it must lie between 1970-01-01 and 2100-01-01 UTC "
            f"(got {parsed.isoformat()}). It may be {FORMATS}.",
            error=error,
        )
    return parsed
