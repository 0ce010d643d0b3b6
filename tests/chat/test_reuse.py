"""What the chat path builds once per process: agents' tools and their schemas, tool
bindings, model clients — and the one client never shared: a caller's own key's."""

from __future__ import annotations

import httpx
import pytest
from langchain_core.messages import AIMessageChunk
from pydantic import BaseModel

from app.chat import llm
from app.chat.agents import Workspace, registry
from app.chat.agents.task_agent import CreateTaskInput
from app.chat.demo_model import DemoChatModel
from app.config import Settings
from app.work import LLMGrant
from tests.chat.conftest import BYOK_KEY, ROOMY_QUOTAS, SERVER_KEY
from tests.chat.support import ANNA
from tests.support.builders import register

# Named agent: no routing call, so each request is the tool call and the answer.
TASK = {**ANNA, "agent": "task_agent"}
OTHER_KEY = "sk-otherCALLERkey-9876543210fedcba"


class _Calls:
    """The (client, tools) of every model call, through the real `ModelCaller`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[llm.ChatClient, object]] = []
        invoke = llm.ModelCaller.invoke

        async def spy(caller, messages, tools=None):
            self.seen.append((caller.client, tools))
            return await invoke(caller, messages, tools)

        monkeypatch.setattr(llm.ModelCaller, "invoke", spy)


def _count_schema_builds(monkeypatch: pytest.MonkeyPatch, model: type[BaseModel]) -> list[int]:
    built: list[int] = []
    original = model.model_json_schema.__func__

    def counting(cls, *args, **kwargs):
        built.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(model, "model_json_schema", classmethod(counting))
    return built


# --- the demo model over REST, both databases --------------------------------------------
@pytest.mark.usefixtures("backend")
async def test_requests_share_the_agents_tool_schemas_and_the_demo_client(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await register(client)
    calls = _Calls(monkeypatch)
    built = _count_schema_builds(monkeypatch, CreateTaskInput)
    for round_ in range(2):
        response = await client.post("/api/v1/chat", json=TASK, headers=account.headers)
        assert response.status_code == 200, response.text
        assert response.json()["actions"][0]["data"]["title"] == "Call Anna"
        # Generated at most once, by the first request this process served.
        assert len(built) <= 1 if round_ == 0 else built == []
        built.clear()
    # Each request: the tool call, then the answer from its result.
    assert len(calls.seen) == 4
    assert {id(client) for client, _ in calls.seen} == {id(llm.DEMO_CLIENT)}
    assert {id(tools) for _, tools in calls.seen} == {id(registry.get("task_agent").tool_schemas)}


# --- LiteLLM over REST, both databases ----------------------------------------------------
@pytest.mark.usefixtures("backend")
class TestOverLiteLLM:
    @pytest.fixture
    def settings_overrides(self, upstream_settings) -> dict[str, object]:
        return upstream_settings

    async def test_operator_key_client_and_its_tool_binding_are_built_once(
        self, client: httpx.AsyncClient, upstream, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls = _Calls(monkeypatch)
        bindings: list[object] = []
        bound = llm.ChatClient.bound

        def spy(self, tools):
            runnable = bound(self, tools)
            bindings.append(runnable)
            return runnable

        monkeypatch.setattr(llm.ChatClient, "bound", spy)
        for _ in range(2):
            response = await client.post("/api/v1/chat", json=TASK)
            assert response.status_code == 200, response.text
            assert response.json()["actions"][0]["data"]["title"] == "Upstream task"
        assert len(upstream.requests) == 4 and len(bindings) == 4
        assert len({id(client) for client, _ in calls.seen}) == 1
        assert len({id(runnable) for runnable in bindings}) == 1
        [(shared, _), *_] = calls.seen
        assert shared.model.api_key == SERVER_KEY

    async def test_a_callers_key_never_reaches_another_callers_call(
        self, client: httpx.AsyncClient, upstream, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls = _Calls(monkeypatch)
        for key in (BYOK_KEY, None, OTHER_KEY, BYOK_KEY, None):
            headers = {"X-LLM-API-KEY": f"openai:{key}"} if key else {}
            upstream.requests.clear()
            response = await client.post("/api/v1/chat", json=TASK, headers=headers)
            assert response.status_code == 200, response.text
            sent = {r["headers"]["authorization"] for r in upstream.requests}
            assert sent == {f"Bearer {key or SERVER_KEY}"}
        byok = {id(c) for c, _ in calls.seen if c.model.api_key in (BYOK_KEY, OTHER_KEY)}
        # A client of its own per BYOK request (both its calls), never kept for later.
        assert len(byok) == 3
        assert all(c.model.api_key not in (BYOK_KEY, OTHER_KEY) for c in llm._shared.values())


# --- the client cache -------------------------------------------------------------------
def _settings(**overrides: object) -> Settings:
    return Settings(
        _env_file=None,
        **{
            **ROOMY_QUOTAS,
            "LLM_MODEL": "openai/gpt-4o-mini",
            "LLM_API_BASE": "http://127.0.0.1:9/v1",
            "LLM_API_KEY": SERVER_KEY,
            **overrides,
        },
    )


def test_operator_clients_are_shared_per_model_endpoint_and_key() -> None:
    grant = LLMGrant(use_llm=True)
    settings = _settings()
    assert llm.llm_client(settings, grant) is llm.llm_client(_settings(), grant)
    other_key = llm.llm_client(_settings(LLM_API_KEY="sk-another-operator-key"), grant)
    assert other_key is not llm.llm_client(settings, grant)
    assert other_key.model.api_key == "sk-another-operator-key"
    other_base = llm.llm_client(_settings(LLM_API_BASE="http://127.0.0.1:10/v1"), grant)
    assert other_base.model.api_base == "http://127.0.0.1:10/v1"
    # The demo model and a demo-fallback grant: the one demo client.
    assert llm.llm_client(_settings(LLM_MODEL="demo"), grant) is llm.DEMO_CLIENT
    assert llm.llm_client(settings, LLMGrant(use_llm=False)) is llm.DEMO_CLIENT


def test_byok_clients_are_never_cached() -> None:
    settings = _settings(BYOK_API_BASES={"openai": "http://127.0.0.1:11/v1"})
    grant = LLMGrant(use_llm=True, api_key=BYOK_KEY, provider="openai")
    first, second = llm.llm_client(settings, grant), llm.llm_client(settings, grant)
    assert first is not second
    assert first.model.api_key == BYOK_KEY
    assert first.model.api_base == "http://127.0.0.1:11/v1"
    assert all(c is not first and c is not second for c in llm._shared.values())


def test_the_client_cache_is_bounded() -> None:
    grant = LLMGrant(use_llm=True)
    for n in range(llm.MAX_SHARED_CLIENTS + 5):
        llm.llm_client(_settings(LLM_API_KEY=f"sk-operator-{n:04d}-abcdef"), grant)
    assert len(llm._shared) == llm.MAX_SHARED_CLIENTS


# --- the demo model without LangChain's run -------------------------------------------------
async def test_demo_client_answers_what_langchain_would() -> None:
    agent = registry.get("task_agent")
    messages = agent.build_messages(ANNA["message"], Workspace(None))
    model = DemoChatModel()
    through_langchain = await model.bind_tools(list(agent.tool_schemas.schemas)).ainvoke(messages)
    direct = await llm.DEMO_CLIENT.ainvoke(messages, agent.tool_schemas)
    assert direct.tool_calls == through_langchain.tool_calls
    assert direct.tool_calls[0]["name"] == "create_task"
    assert direct.usage_metadata == through_langchain.usage_metadata

    streamed: AIMessageChunk | None = None
    async for chunk in llm.DEMO_CLIENT.astream(messages, agent.tool_schemas):
        streamed = chunk if streamed is None else streamed + chunk
    langchain_streamed: AIMessageChunk | None = None
    async for chunk in model.bind_tools(list(agent.tool_schemas.schemas)).astream(messages):
        langchain_streamed = chunk if langchain_streamed is None else langchain_streamed + chunk
    assert streamed is not None and langchain_streamed is not None
    assert streamed.tool_calls == langchain_streamed.tool_calls == direct.tool_calls
    assert streamed.usage_metadata == langchain_streamed.usage_metadata
