from __future__ import annotations

import logging

import httpx
import pytest

from app.chat.llm import build_chat_model
from app.config import Settings
from app.errors import BadRequest
from app.kit.byok import BYOKPolicy, mask, parse_llm_key
from app.kit.units import LLMGrant
from tests.gateway.conftest import PROBE_PATH, Probe


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


# --- which providers, and where their calls go ------------------------------------------
def byok_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "LLM_MODEL": "openai/gpt-4o-mini",
        "LLM_API_BASE": "http://127.0.0.1:9/v1",  # the operator's own upstream
        "LLM_API_KEY": "sk-operator-0123456789",
    }
    return Settings(_env_file=None, **{**values, **overrides})  # type: ignore[arg-type]


def byok_grant(provider: str, key: str = "sk-caller-0123456789") -> LLMGrant:
    return LLMGrant(use_llm=True, api_key=key, provider=provider)


LOCAL_PROVIDERS = [
    "ollama",
    "ollama_chat",
    "llamafile",
    "lm_studio",
    "hosted_vllm",
    "vllm",
    "openai_like",
    "custom_openai",
    "litellm_proxy",
    "azure",
    "xinference",
    "made-up",
]


@pytest.mark.parametrize("provider", LOCAL_PROVIDERS)
def test_local_configurable_and_unknown_providers_are_refused(provider: str) -> None:
    policy = BYOKPolicy.from_settings(byok_settings())
    secret = "sk-caller-0123456789"
    with pytest.raises(BadRequest) as info:
        policy.check(parse_llm_key(f"{provider}:{secret}"))
    assert info.value.status_code == 400
    assert info.value.error == "llm_provider_not_allowed"
    assert secret not in info.value.message and "sk-…89" in info.value.message
    # The model factory refuses it too, whatever admitted the unit.
    with pytest.raises(BadRequest):
        build_chat_model("openai/gpt-4o-mini", byok_settings(), byok_grant(provider, secret))


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "openai/gpt-4o-mini"),
        ("anthropic", "anthropic/claude-haiku-4-5"),
        ("groq", "groq/llama-3.1-8b-instant"),
        ("mistral", "mistral/mistral-small-latest"),
    ],
)
def test_byok_calls_go_to_the_providers_own_endpoint(provider: str, model: str) -> None:
    # Built, never called: the assertion is on where the call would go.
    built = build_chat_model("openai/gpt-4o-mini", byok_settings(), byok_grant(provider))
    assert built.api_base is None  # the provider's default endpoint, not LLM_API_BASE
    assert built.model == model
    assert built.api_key == "sk-caller-0123456789"


def test_byok_calls_go_to_the_base_the_operator_configured_for_the_provider() -> None:
    settings = byok_settings(BYOK_API_BASES={"openai": "http://127.0.0.1:10/v1"})
    assert build_chat_model("gpt-4o-mini", settings, byok_grant("openai")).api_base == (
        "http://127.0.0.1:10/v1"
    )
    # Another provider's key still goes to its own endpoint.
    assert build_chat_model("gpt-4o-mini", settings, byok_grant("anthropic")).api_base is None
    # Without a key, the operator's upstream and key, as configured.
    own = build_chat_model("gpt-4o-mini", settings, LLMGrant(use_llm=True))
    assert (own.api_base, own.api_key) == ("http://127.0.0.1:9/v1", "sk-operator-0123456789")


def test_providers_come_from_settings() -> None:
    settings = byok_settings(BYOK_PROVIDERS="anthropic, OpenAI")
    policy = BYOKPolicy.from_settings(settings)
    assert policy.providers == ("anthropic", "openai")
    with pytest.raises(BadRequest):
        policy.check(parse_llm_key("groq:gsk_abcdef123456"))
    # A provider without a public endpoint only with the operator's base for it.
    with pytest.raises(ValueError, match="ollama"):
        BYOKPolicy.from_settings(byok_settings(BYOK_PROVIDERS="openai,ollama"))
    local = byok_settings(
        BYOK_PROVIDERS="ollama", BYOK_API_BASES={"ollama": "http://127.0.0.1:11/"}
    )
    built = build_chat_model("openai/gpt-4o-mini", local, byok_grant("ollama"))
    assert (built.model, built.api_base) == ("ollama/gpt-4o-mini", "http://127.0.0.1:11/")


# --- through the gateway ------------------------------------------------------------------
@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("key", ["ollama:sk-local-0123456789", "vllm:abcdefgh123", "nope:12345678"])
async def test_refused_provider_is_400_before_anything_is_counted(
    client: httpx.AsyncClient, probe: Probe, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await client.post(PROBE_PATH, headers={"X-LLM-API-KEY": key})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "llm_provider_not_allowed" and body["request_id"]
    secret = key.partition(":")[2]
    assert secret not in body["message"] and secret not in caplog.text
    assert probe.units == []
    status = (await client.get("/api/v1/quota/status")).json()
    assert status["daily"]["used"] == 0 and status["llm"]["used"] == 0
