"""`CORS_ORIGINS` and `CORS_ORIGIN_REGEX` as an operator writes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.support.settings import make_settings


def test_origins_are_read_as_browsers_send_them(tmp_path: Path) -> None:
    settings = make_settings(
        "", tmp_path, CORS_ORIGINS="http://LocalHost:5173/, app://Adiuva, null, file://"
    )
    assert settings.CORS_ORIGINS == ["http://localhost:5173", "app://adiuva", "null", "file://"]


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"CORS_ORIGINS": "*"}, "cannot be `*`"),
        ({"CORS_ORIGINS": "https://app.example/login"}, "is not an origin"),
        ({"CORS_ORIGINS": "localhost:5173"}, "is not an origin"),
        ({"CORS_ORIGIN_REGEX": "http://(localhost"}, "not a regular expression"),
    ],
)
def test_settings_that_are_not_origins_are_refused(
    tmp_path: Path, overrides: dict, complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        make_settings("", tmp_path, **overrides)
