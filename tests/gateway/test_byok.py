from __future__ import annotations

import pytest

from app.errors import BadRequest
from app.gateway.byok import mask, parse_llm_key


@pytest.mark.parametrize(
    ("raw", "provider", "key"),
    [
        ("openai:sk-abcdef123456", "openai", "sk-abcdef123456"),
        ("anthropic:sk-ant-abcdef123456", "anthropic", "sk-ant-abcdef123456"),
        ("groq:gsk_abcdef123456", "groq", "gsk_abcdef123456"),
        ("OpenAI : sk-abcdef123456", "openai", "sk-abcdef123456"),
        ("sk-abcdef123456", "openai", "sk-abcdef123456"),
        ("sk-ant-abcdef123456", "anthropic", "sk-ant-abcdef123456"),
    ],
)
def test_key_formats(raw, provider, key):
    parsed = parse_llm_key(raw)
    assert (parsed.provider, parsed.key) == (provider, key)
    assert key not in repr(parsed)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "sk-",
        "short",
        "nokeyprefix123456",
        ":sk-abcdef123456",
        "openai:",
        "openai:has space x",
        "1bad:sk-abcdef123456",
        "openai:sk-abc\ndef123",
    ],
)
def test_malformed_keys_are_refused_and_masked(raw):
    with pytest.raises(BadRequest) as info:
        parse_llm_key(raw)
    assert info.value.error == "invalid_llm_key"
    if len(raw) > 8:
        assert raw not in info.value.message


def test_mask_never_reveals_enough():
    assert mask("sk-abcdefghijklmnop") == "sk-…op"
    assert mask("short") == "***"
