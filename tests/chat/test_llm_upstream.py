"""LiteLLM end to end against the local OpenAI-compatible server: tool calls, streaming,
usage and cost into the credit meter, errors and timeouts, the BYOK key."""

from __future__ import annotations

import pytest

from app.chat.agents import registry
from app.chat.errors import UpstreamError, UpstreamTimeout
from app.chat.llm import ModelCaller, get_llm
from app.config import Settings
from tests.chat.conftest import BYOK_KEY, SERVER_KEY, FakeAccountant, metered_unit
from tests.chat.test_agents import CONTEXT


@pytest.fixture
def llm_settings(upstream_settings) -> Settings:
    return Settings(_env_file=None, **upstream_settings)


def caller(settings: Settings, accountant: FakeAccountant, key: str | None = None) -> ModelCaller:
    unit = metered_unit(accountant, key)
    return ModelCaller(get_llm(settings, unit.llm), unit)


async def test_tool_loop_over_litellm_meters_every_call(upstream, llm_settings) -> None:
    accountant = FakeAccountant()
    result = await registry.call_agent(
        "task_agent", "add the upstream task", CONTEXT, llm=caller(llm_settings, accountant)
    )
    assert [a.data["title"] for a in result.actions] == ["Upstream task"]
    assert result.response == "All done: the task is created."
    assert len(upstream.requests) == 2
    assert upstream.requests[0]["body"]["tools"][1]["function"]["name"] == "create_task"
    assert upstream.requests[0]["body"]["temperature"] == 0
    assert upstream.requests[0]["headers"]["authorization"] == f"Bearer {SERVER_KEY}"
    assert accountant.reserved == [50, 50] and accountant.open == 0
    first = accountant.settled[0]
    assert (first.prompt_tokens, first.completion_tokens) == (120, 30)
    assert first.cost_usd > 0  # priced from LiteLLM's (local) cost map


async def test_streaming_records_usage_and_settles(upstream, llm_settings) -> None:
    accountant = FakeAccountant()
    tokens = []
    async for event in registry.get("task_agent").stream(
        "add the upstream task", CONTEXT, llm=caller(llm_settings, accountant)
    ):
        if isinstance(event, str):
            tokens.append(event)
    assert "".join(tokens) == "All done: the task is created."
    assert len(tokens) > 1  # streamed in pieces, as the server sent them
    assert upstream.requests[-1]["body"]["stream"] is True
    assert accountant.open == 0
    assert all(m.completion_tokens == 30 for m in accountant.settled)


async def test_disconnect_mid_stream_still_settles(upstream, llm_settings) -> None:
    upstream.tool_call = None  # answer with text straight away
    accountant = FakeAccountant()
    stream = registry.get("task_agent").stream(
        "anything", CONTEXT, llm=caller(llm_settings, accountant)
    )
    first = await anext(stream)
    assert isinstance(first, str)
    await stream.aclose()  # what a client disconnect does to the handler
    assert accountant.open == 0
    assert accountant.settled[0].completion_tokens > 0  # billed for what was streamed


async def test_upstream_error_is_502_and_releases(upstream, llm_settings) -> None:
    upstream.mode = "error"
    accountant = FakeAccountant()
    with pytest.raises(UpstreamError) as caught:
        await registry.call_agent("task_agent", "x", CONTEXT, llm=caller(llm_settings, accountant))
    assert caught.value.status_code == 502
    assert len(upstream.requests) == 1  # no hidden retries: the caller is waiting
    assert accountant.open == 0 and accountant.settled[0].cost_usd == 0


async def test_upstream_timeout_is_504_and_releases(upstream, llm_settings) -> None:
    upstream.mode = "hang"
    accountant = FakeAccountant()
    with pytest.raises(UpstreamTimeout) as caught:
        await registry.call_agent("task_agent", "x", CONTEXT, llm=caller(llm_settings, accountant))
    assert caught.value.status_code == 504
    assert accountant.open == 0 and accountant.settled[0].cost_usd == 0


async def test_byok_key_reaches_upstream(upstream, llm_settings) -> None:
    await registry.call_agent(
        "task_agent", "x", CONTEXT, llm=caller(llm_settings, FakeAccountant(), BYOK_KEY)
    )
    assert {r["headers"]["authorization"] for r in upstream.requests} == {f"Bearer {BYOK_KEY}"}
