"""`X-LLM-API-KEY`: the caller's own LLM key, for this request only.

Formats: `openai:sk-…`, `anthropic:sk-ant-…`, any `provider:key`, or a bare
`sk-ant-…` (Anthropic) / `sk-…` (OpenAI). The key is never stored or logged;
errors show it masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import BadRequest

HEADER = b"x-llm-api-key"
_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
_KEY = re.compile(r"^[A-Za-z0-9._~+/=-]{8,512}$")


@dataclass(frozen=True, slots=True)
class LLMKey:
    provider: str
    key: str

    def __repr__(self) -> str:
        return f"LLMKey(provider={self.provider!r}, key={mask(self.key)!r})"


def mask(secret: str) -> str:
    """Enough to recognise a key, never enough to use it."""
    if len(secret) <= 8:
        return "***"
    return f"{secret[:3]}…{secret[-2:]}"


def _malformed(raw: str) -> BadRequest:
    return BadRequest(
        "Malformed X-LLM-API-KEY header (got "
        f"'{mask(raw)}'): expected 'provider:key' (e.g. 'openai:sk-…', 'anthropic:sk-ant-…') "
        "or a bare 'sk-…' / 'sk-ant-…' key.",
        error="invalid_llm_key",
    )


def parse_llm_key(raw: str) -> LLMKey:
    value = raw.strip()
    if ":" in value:
        provider, _, key = value.partition(":")
        provider = provider.strip().lower()
        key = key.strip()
        if not _PROVIDER.match(provider) or not _KEY.match(key):
            raise _malformed(value)
        return LLMKey(provider, key)
    if _KEY.match(value):
        if value.startswith("sk-ant-"):
            return LLMKey("anthropic", value)
        if value.startswith("sk-"):
            return LLMKey("openai", value)
    raise _malformed(value)


def llm_key_from_headers(headers: list[tuple[bytes, bytes]]) -> LLMKey | None:
    for name, value in headers:
        if name == HEADER:
            return parse_llm_key(value.decode("latin-1"))
    return None
