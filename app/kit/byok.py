"""`X-LLM-API-KEY`: the caller's own LLM key, for this request only.

Formats: `openai:sk-…`, `anthropic:sk-ant-…`, any `provider:key`, or a bare
`sk-ant-…` (Anthropic) / `sk-…` (OpenAI). The key is never stored or logged;
errors show it masked.

A key chooses a key, never a destination: only the providers in
`BYOK_PROVIDERS` are accepted, and a BYOK call goes to the provider's own
endpoint, or to the base the operator configured for that provider in
`BYOK_API_BASES` — never to a local or caller-chosen address, never to the
operator's `LLM_API_BASE`. Any other provider is refused with 400 before the
request is counted (`app/gateway/byok.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from app.config import Settings
from app.errors import BadRequest
from app.work import LLMKey

HEADER = b"x-llm-api-key"

# Hosted providers with a fixed public endpoint, each with the model a BYOK request
# uses when the configured model belongs to another provider.
HOSTED_PROVIDERS: Mapping[str, str] = MappingProxyType(
    {
        "openai": "gpt-4o-mini",
        "anthropic": "anthropic/claude-haiku-4-5",
        "gemini": "gemini/gemini-2.0-flash",
        "mistral": "mistral/mistral-small-latest",
        "groq": "groq/llama-3.1-8b-instant",
        "deepseek": "deepseek/deepseek-chat",
        "xai": "xai/grok-3-mini",
        "together_ai": "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "fireworks_ai": "fireworks_ai/accounts/fireworks/models/llama-v3p1-8b-instruct",
        "perplexity": "perplexity/sonar",
        "cerebras": "cerebras/llama3.1-8b",
        "openrouter": "openrouter/openai/gpt-4o-mini",
    }
)
_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
_KEY = re.compile(r"^[A-Za-z0-9._~+/=-]{8,512}$")


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


# Where the gateway leaves the parsed key in the request scope's state.
LLM_KEY = "llm_key"


def llm_key_from_headers(headers: list[tuple[bytes, bytes]]) -> LLMKey | None:
    for name, value in headers:
        if name == HEADER:
            return parse_llm_key(value.decode("latin-1"))
    return None


def _not_allowed(key: LLMKey, allowed: Iterable[str]) -> BadRequest:
    return BadRequest(
        f"X-LLM-API-KEY names the provider '{key.provider}' (key '{mask(key.key)}'), which "
        f"this server does not accept for callers' own keys. Accepted: {', '.join(allowed)}.",
        error="llm_provider_not_allowed",
    )


@dataclass(frozen=True, slots=True)
class BYOKPolicy:
    """Which providers a caller's key may name, and where each one's calls go."""

    providers: tuple[str, ...]
    api_bases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> BYOKPolicy:
        providers = tuple(dict.fromkeys(p.strip().lower() for p in settings.BYOK_PROVIDERS))
        bases = {p.strip().lower(): url for p, url in settings.BYOK_API_BASES.items() if url}
        # A provider without a public endpoint of its own (ollama, vllm, an
        # OpenAI-compatible server…) is usable only where the operator says it is.
        unreachable = [p for p in providers if p not in HOSTED_PROVIDERS and p not in bases]
        if unreachable:
            raise ValueError(
                f"BYOK_PROVIDERS lists {', '.join(unreachable)}: not a hosted provider this "
                "server knows; give it a base URL in BYOK_API_BASES or remove it"
            )
        return cls(providers, MappingProxyType(bases))

    def check(self, key: LLMKey) -> LLMKey:
        if key.provider not in self.providers:
            raise _not_allowed(key, self.providers)
        return key

    def api_base(self, provider: str) -> str | None:
        """The operator's base for this provider; None: the provider's own endpoint."""
        return self.api_bases.get(provider)

    def default_model(self, provider: str, configured_model: str) -> str:
        """The model a key of `provider` calls when the configured model is another's."""
        return HOSTED_PROVIDERS.get(provider) or f"{provider}/{configured_model.split('/')[-1]}"
