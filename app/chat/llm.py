"""LiteLLM factory and the metered caller every LLM call goes through.

`get_llm()` / `get_router_llm()` build LangChain chat models over LiteLLM
(`langchain_litellm.ChatLiteLLM`) from `LLM_MODEL` / `LLM_ROUTER_MODEL`, or the
local `demo` model. `ModelCaller` wraps each call in the unit of work's credit
meter, records LiteLLM's usage and cost, and turns provider failures into
502/504.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import anyio
import litellm
import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_litellm import ChatLiteLLM

from app.chat.demo_model import DEMO_MODEL, DemoChatModel
from app.chat.errors import UpstreamError, UpstreamTimeout
from app.config import Settings
from app.kit.byok import BYOKPolicy
from app.work import CreditMeter, LLMGrant, LLMKey, UnitOfWork

log = logging.getLogger(__name__)


def _provider_of(model: str) -> str | None:
    try:
        return litellm.get_llm_provider(model=model)[1]
    except litellm.BadRequestError:
        return None


def build_chat_model(
    model: str, settings: Settings, grant: LLMGrant | None = None
) -> BaseChatModel:
    """A chat model for `model` (any LiteLLM model string, or `demo`), temperature 0."""
    if model == DEMO_MODEL or (grant is not None and not grant.use_llm):
        return DemoChatModel()
    api_base = settings.LLM_API_BASE or None
    api_key = settings.LLM_API_KEY or None
    if grant is not None and grant.byok:
        # The caller's key chooses a key, never a destination: the provider's own
        # endpoint or the operator's base for it, never LLM_API_BASE.
        policy = BYOKPolicy.from_settings(settings)
        key = policy.check(LLMKey(grant.provider or "", grant.api_key or ""))
        api_key = key.key
        if _provider_of(model) != key.provider:
            # A key for another provider than the configured model's cannot call it.
            model = policy.default_model(key.provider, model)
        api_base = policy.api_base(key.provider)
    return ChatLiteLLM(
        model=model,
        temperature=0,
        api_base=api_base,
        api_key=api_key,
        request_timeout=settings.LLM_TIMEOUT_SECONDS,
        # One attempt: the caller is waiting, and a retry would bill the quota twice.
        max_retries=1,
        model_kwargs={"num_retries": 0},
    )


def get_llm(settings: Settings, grant: LLMGrant | None = None) -> BaseChatModel:
    return build_chat_model(settings.LLM_MODEL, settings, grant)


def get_router_llm(settings: Settings, grant: LLMGrant | None = None) -> BaseChatModel:
    return build_chat_model(settings.LLM_ROUTER_MODEL or settings.LLM_MODEL, settings, grant)


def _upstream_failure(exc: BaseException) -> Exception | None:
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return UpstreamTimeout()
    if isinstance(exc, openai.OpenAIError):
        # The provider's message may quote the key (masked or not): never pass it on.
        return UpstreamError(
            f"The language model provider returned an error ({type(exc).__name__}). "
            "Try again later."
        )
    return None


def _estimate_tokens(text: str) -> int:
    # Only for a stream cut before the provider reported usage: ~4 characters a token.
    return math.ceil(len(text) / 4)


def _cost(model_name: str, prompt_tokens: int, completion_tokens: int) -> float:
    if model_name == DEMO_MODEL or not (prompt_tokens or completion_tokens):
        return 0.0
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model_name, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except litellm.ModelNotMappedError:
        # A self-hosted or unlisted model has no price: its calls cost no credits.
        log.debug("no price known for model %s", model_name)
        return 0.0
    return float(prompt_cost + completion_cost)


def record_usage(
    meter: CreditMeter,
    model_name: str,
    message: AIMessage | AIMessageChunk | None,
    prompt_text: str = "",
) -> None:
    """Record a call's cost and tokens: LiteLLM's figures, else an estimate."""
    usage = getattr(message, "usage_metadata", None) if message is not None else None
    if usage:
        prompt_tokens = int(usage.get("input_tokens") or 0)
        completion_tokens = int(usage.get("output_tokens") or 0)
    else:
        prompt_tokens = _estimate_tokens(prompt_text)
        completion_tokens = _estimate_tokens(str(message.content)) if message is not None else 0
    reported = (
        (message.response_metadata or {}).get("response_cost") if message is not None else None
    )
    cost = float(reported) if reported else _cost(model_name, prompt_tokens, completion_tokens)
    meter.record(cost, prompt_tokens, completion_tokens)


@asynccontextmanager
async def metered(unit: UnitOfWork | None) -> AsyncIterator[CreditMeter]:
    """`unit.metered_call()`, with its settlement shielded from cancellation.

    A client that disconnects mid-stream cancels the handler; the settlement must
    still reach the database, or the reservation would stay held.
    """
    if unit is None:
        yield CreditMeter()
        return
    manager = unit.metered_call()
    meter = await manager.__aenter__()
    exc_info: tuple[Any, Any, Any] = (None, None, None)
    try:
        yield meter
    except BaseException as exc:
        exc_info = (type(exc), exc, exc.__traceback__)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await manager.__aexit__(*exc_info)


def _model_name(model: BaseChatModel) -> str:
    return getattr(model, "model", None) or DEMO_MODEL


def _prompt_text(messages: Sequence[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


class ModelCaller:
    """One request's access to a chat model: metered, with provider errors mapped."""

    def __init__(self, model: BaseChatModel, unit: UnitOfWork | None) -> None:
        self.model = model
        self.unit = unit
        self.model_name = _model_name(model)

    @property
    def is_demo(self) -> bool:
        return isinstance(self.model, DemoChatModel)

    def _bound(self, tools: Sequence[dict[str, Any]] | None):
        return self.model.bind_tools(list(tools)) if tools else self.model

    async def invoke(
        self, messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]] | None = None
    ) -> AIMessage:
        async with metered(self.unit) as meter:
            result: AIMessage | None = None
            try:
                result = await self._bound(tools).ainvoke(list(messages))
            except Exception as exc:
                mapped = _upstream_failure(exc)
                if mapped is None:
                    raise
                raise mapped from exc
            finally:
                if result is not None:
                    record_usage(meter, self.model_name, result, _prompt_text(messages))
            return result

    async def stream(
        self, messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]] | None = None
    ) -> AsyncIterator[AIMessageChunk]:
        """Chunks as the provider sends them; the last merged chunk's usage is billed."""
        async with metered(self.unit) as meter:
            merged: AIMessageChunk | None = None
            try:
                async for chunk in self._bound(tools).astream(list(messages)):
                    merged = chunk if merged is None else merged + chunk
                    yield chunk
            except Exception as exc:
                mapped = _upstream_failure(exc)
                if mapped is None:
                    raise
                raise mapped from exc
            finally:
                # Also on disconnect or error: bill what was really used (nothing if no
                # chunk ever arrived: the provider refused or never answered).
                if merged is not None:
                    record_usage(meter, self.model_name, merged, _prompt_text(messages))
