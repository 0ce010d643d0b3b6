"""The one rule for client timestamps: seconds below 1e11, milliseconds from 1e11, or ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.errors import Unprocessable
from app.kit.timestamps import parse_client_timestamp

NOV_14_2023 = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000", NOV_14_2023),
        ("1700000000000", NOV_14_2023),
        (" 1700000000.5 ", NOV_14_2023.replace(microsecond=500_000)),
        ("1700000000123", NOV_14_2023.replace(microsecond=123_000)),
        ("2023-11-14T22:13:20Z", NOV_14_2023),
        ("2023-11-14T23:13:20+01:00", NOV_14_2023),
        ("2023-11-14T22:13:20", NOV_14_2023),
        ("0", datetime(1970, 1, 1, tzinfo=UTC)),
        # The boundary: 1e11 is milliseconds (1973), one less is seconds (refused: year 5138).
        ("100000000000", datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)),
    ],
)
def test_accepted_forms(text: str, expected: datetime) -> None:
    assert parse_client_timestamp(text, field="t") == expected


@pytest.mark.parametrize(
    "text",
    ["99999999999", "4102444800000", "-1", "1e12", "", "tomorrow", "1700000000.1234567"],
)
def test_refused_with_a_clear_422(text: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        parse_client_timestamp(text, field="X-Some-Time", error="invalid_some_time")
    assert refused.value.status_code == 422
    assert refused.value.error == "invalid_some_time"
    assert refused.value.message.startswith("X-Some-Time")
