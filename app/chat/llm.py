"""LiteLLM factory, the per-process model clients, and the metered caller.

`build_chat_model()` builds a LangChain chat model over LiteLLM
(`langchain_litellm.ChatLiteLLM`) for `LLM_MODEL` / `LLM_ROUTER_MODEL`, or the
local `demo` model. `llm_client()` / `router_client()` hand out `ChatClient`s:
built once per process for the operator's key (a bounded cache), once for the
demo model, and per request for a caller's own (BYOK) key, which is never kept.
A `ChatClient` binds each agent's tool schemas once. `ModelCaller` wraps each
call in the unit of work's credit meter, records LiteLLM's usage and cost, and
turns provider failures into 502/504.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import anyio
import litellm
import openai
from cachetools import LRUCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
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


def _model_name(model: BaseChatModel) -> str:
    return getattr(model, "model", None) or DEMO_MODEL


@dataclass(frozen=True, eq=False)
class ToolSchemas:
    """One agent's tools as OpenAI function schemas, built once per process.

    Compared by identity: a `ChatClient` keeps the model bound to these tools
    under this very object, so each agent's tools are bound once per client.
    """

    owner: str
    schemas: tuple[dict[str, Any], ...]

    def __len__(self) -> int:
        return len(self.schemas)


# Bindings a client keeps: one per agent's tools (four agents); a bound for safety.
_MAX_BINDINGS = 32


Tools = ToolSchemas | Sequence[dict[str, Any]] | None


class ChatClient:
    """A chat model and its tool bindings, shared by every request that may use it."""

    def __init__(self, model: BaseChatModel) -> None:
        self.model = model
        self.model_name = _model_name(model)
        self._bindings: dict[ToolSchemas, Runnable] = {}

    def bound(self, tools: ToolSchemas | Sequence[dict[str, Any]] | None) -> Runnable:
        """The model with `tools` bound; for an agent's `ToolSchemas`, bound once."""
        if not tools:
            return self.model
        if not isinstance(tools, ToolSchemas):
            return self.model.bind_tools(list(tools))
        runnable = self._bindings.get(tools)
        if runnable is None:
            runnable = self.model.bind_tools(list(tools.schemas))
            if len(self._bindings) < _MAX_BINDINGS:
                self._bindings[tools] = runnable
        return runnable

    async def ainvoke(self, messages: list[BaseMessage], tools: Tools) -> AIMessage:
        return await self.bound(tools).ainvoke(messages)

    async def astream(
        self, messages: list[BaseMessage], tools: Tools
    ) -> AsyncIterator[AIMessageChunk]:
        async for chunk in self.bound(tools).astream(messages):
            yield chunk


class DemoClient(ChatClient):
    """The offline demo model, answered without LangChain's run around each call.

    The model is local, deterministic and free: its reply costs less than the run
    LangChain wraps around a call (callback manager, config merging, tracing hooks),
    and a tool loop makes two calls per request. Its replies come straight from
    `DemoChatModel.reply` / `reply_chunks`, the messages LangChain would return.
    """

    model: DemoChatModel

    def __init__(self, model: DemoChatModel) -> None:
        super().__init__(model)

    @staticmethod
    def _schemas(tools: Tools) -> Sequence[dict[str, Any]] | None:
        if not tools:
            return None
        if isinstance(tools, ToolSchemas):
            return tools.schemas
        return [convert_to_openai_tool(tool) for tool in tools]

    async def ainvoke(self, messages: list[BaseMessage], tools: Tools) -> AIMessage:
        return self.model.reply(messages, self._schemas(tools))

    async def astream(
        self, messages: list[BaseMessage], tools: Tools
    ) -> AsyncIterator[AIMessageChunk]:
        for chunk in self.model.reply_chunks(messages, self._schemas(tools)):
            yield chunk
            # Let the event loop send each token as it is produced.
            await asyncio.sleep(0)


def client_for(model: ChatClient | BaseChatModel) -> ChatClient:
    if isinstance(model, ChatClient):
        return model
    if isinstance(model, DemoChatModel):
        return DemoClient(model)
    return ChatClient(model)


DEMO_CLIENT = DemoClient(DemoChatModel())

# Clients over the operator's key: per model, endpoint, key and timeout. The key is
# held by the client anyway; the cache key has only its digest.
MAX_SHARED_CLIENTS = 16
_shared: LRUCache[tuple[Any, ...], ChatClient] = LRUCache(maxsize=MAX_SHARED_CLIENTS)
_shared_lock = threading.Lock()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def chat_client(model: str, settings: Settings, grant: LLMGrant | None = None) -> ChatClient:
    """The client for `model` this grant may use.

    The demo model and the operator's key: one client per process (per model,
    endpoint, key and timeout). A caller's own key: a client of its own, for
    this request only, so the key never reaches another caller's calls.
    """
    if model == DEMO_MODEL or (grant is not None and not grant.use_llm):
        return DEMO_CLIENT
    if grant is not None and grant.byok:
        return ChatClient(build_chat_model(model, settings, grant))
    key = (
        model,
        settings.LLM_API_BASE or None,
        _digest(settings.LLM_API_KEY) if settings.LLM_API_KEY else None,
        settings.LLM_TIMEOUT_SECONDS,
    )
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = ChatClient(build_chat_model(model, settings, grant))
    return client


def llm_client(settings: Settings, grant: LLMGrant | None = None) -> ChatClient:
    return chat_client(settings.LLM_MODEL, settings, grant)


def router_client(settings: Settings, grant: LLMGrant | None = None) -> ChatClient:
    return chat_client(settings.LLM_ROUTER_MODEL or settings.LLM_MODEL, settings, grant)


def get_llm(settings: Settings, grant: LLMGrant | None = None) -> BaseChatModel:
    return llm_client(settings, grant).model


def get_router_llm(settings: Settings, grant: LLMGrant | None = None) -> BaseChatModel:
    return router_client(settings, grant).model


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
    prompt: str | Sequence[BaseMessage] = "",
) -> None:
    """Record a call's cost and tokens: LiteLLM's figures, else an estimate."""
    usage = getattr(message, "usage_metadata", None) if message is not None else None
    if usage:
        prompt_tokens = int(usage.get("input_tokens") or 0)
        completion_tokens = int(usage.get("output_tokens") or 0)
    else:
        # The prompt's text is joined only when the provider reported no usage.
        text = prompt if isinstance(prompt, str) else _prompt_text(prompt)
        prompt_tokens = _estimate_tokens(text)
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
    if unit is None or not unit.llm.metered or unit.accountant is None:
        # Nothing to reserve or settle (the demo model, an unmetered caller).
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


def _prompt_text(messages: Sequence[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


class ModelCaller:
    """One request's access to a chat model: metered, with provider errors mapped."""

    def __init__(self, model: ChatClient | BaseChatModel, unit: UnitOfWork | None) -> None:
        self.client = client_for(model)
        self.model = self.client.model
        self.unit = unit
        self.model_name = self.client.model_name

    @property
    def is_demo(self) -> bool:
        return isinstance(self.model, DemoChatModel)

    async def invoke(self, messages: Sequence[BaseMessage], tools: Tools = None) -> AIMessage:
        async with metered(self.unit) as meter:
            result: AIMessage | None = None
            try:
                result = await self.client.ainvoke(list(messages), tools)
            except Exception as exc:
                mapped = _upstream_failure(exc)
                if mapped is None:
                    raise
                raise mapped from exc
            finally:
                if result is not None:
                    record_usage(meter, self.model_name, result, messages)
            return result

    async def stream(
        self, messages: Sequence[BaseMessage], tools: Tools = None
    ) -> AsyncIterator[AIMessageChunk]:
        """Chunks as the provider sends them; the last merged chunk's usage is billed."""
        async with metered(self.unit) as meter:
            merged: AIMessageChunk | None = None
            try:
                async for chunk in self.client.astream(list(messages), tools):
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
                    record_usage(meter, self.model_name, merged, messages)
