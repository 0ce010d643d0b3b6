"""Address normalisation and look-alike refusal (pure logic)."""

from __future__ import annotations

import pytest

from app.auth.emails import ConfusableAddress, normalise_email


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ａlice@ｅxample.com", "alice@example.com"),  # full-width
        ("  Ada.Lovelace@Example.COM ", "ada.lovelace@example.com"),
        ("ﬁona@example.com", "fiona@example.com"),  # the ligature ﬁ
        ("jöhn.doe@exämple.de", "jöhn.doe@exämple.de"),
        ("иван@почта.рф", "иван@почта.рф"),  # one script, even if it looks Latin-ish
        ("x@例え.jp", "x@例え.jp"),  # kanji and kana mixed: nothing passes for Latin
    ],
)
def test_normalised(given: str, expected: str) -> None:
    assert normalise_email(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "\u0430lice@example.com",  # Cyrillic а in a Latin name
        "p\u0430ypal@example.com",
        "\u03c1aypal@example.com",  # Greek ρ
        "alice@\u0430pple.com",  # in the domain
    ],
)
def test_mixed_script_look_alikes_refused(given: str) -> None:
    with pytest.raises(ConfusableAddress):
        normalise_email(given)
