"""The offline `demo` chat model: deterministic, local, and a real LangChain chat model.

It answers the same prompts a hosted model gets. Asked to route, it names agents
by keywords; with tools bound, it emits genuine tool calls whose arguments it
parses from the message and the workspace context in the system prompt; given
tool results, it writes a short answer from their summaries. It streams token by
token and reports (estimated) token usage, at no cost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from app.chat import demo_intent as di
from app.chat.prompts import (
    AGENT_RESULTS_HEADER,
    CONTEXT_HEADER,
    PREVIOUS_RESULTS_HEADER,
    ROUTER_INSTRUCTION,
)
from app.chat.understanding import answers, detect_language, understand
from app.chat.understanding import lexicon as lx

DEMO_MODEL = "demo"
ToolCall = tuple[str, dict[str, Any]]
_TOKEN = re.compile(r"\S+\s*|\s+")


def _json_after(text: str, header: str) -> Any:
    if header not in text:
        return None
    line = text.split(header, 1)[1].strip().splitlines()
    try:
        return json.loads(line[0]) if line else None
    except json.JSONDecodeError:
        return None


def _created(previous: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records earlier agents of this request created, by table."""
    created: dict[str, list[dict[str, Any]]] = {}
    for result in previous:
        for action in result.get("actions", []) if isinstance(result, dict) else []:
            if action.get("type") == "create_record":
                row = {"id": action.get("id"), **action.get("data", {})}
                created.setdefault(action.get("table"), []).append(row)
    return created


@dataclass(frozen=True)
class DemoTurn:
    """What the demo model knows when an agent's tools are bound: the request as read
    from the prompt, for an agent's own planner (`ChatAgent.demo_plan`)."""

    message: str
    context: dict[str, Any]
    previous: list[dict[str, Any]]
    history: list[tuple[str, str]]
    tools: frozenset[str]
    today: dt.date
    language: str


class DemoPlanner(Protocol):
    """An agent as the demo model dispatches to it (`app.chat.agents.base.ChatAgent`)."""

    name: str
    table: str

    def demo_plan(self, turn: DemoTurn) -> list[ToolCall] | None: ...


# Tool name → the agent it belongs to, rebuilt by `learn` when an agent registers.
_PLANNERS: dict[str, DemoPlanner] = {}


def learn(agents: Iterable[Any]) -> None:
    """Rebuild the tool → agent dispatch, in place, from the registered agents."""
    _PLANNERS.clear()
    for agent in agents:
        for tool in agent.tools:
            _PLANNERS.setdefault(tool.name, agent)


def _owner(tools: Iterable[str]) -> DemoPlanner | None:
    return next((_PLANNERS[t] for t in tools if t in _PLANNERS), None)


def plan(
    message: str,
    context: dict[str, Any],
    previous: list[dict[str, Any]],
    history: list[tuple[str, str]],
    tools: set[str],
) -> list[ToolCall]:
    """Which of `tools` a capable model would call for `message`, with which arguments."""
    today = dt.date.fromisoformat(context.get("today") or dt.date.today().isoformat())
    agent = _owner(tools)
    if agent is not None:
        turn = DemoTurn(
            message, context, previous, history, frozenset(tools), today, detect_language(message)
        )
        calls = agent.demo_plan(turn)
        if calls is not None:
            return [(name, args) for name, args in calls if name in tools]
    understood = understand(
        message, today=today, context=context, history=history, created=_created(previous)
    )
    return [(i.tool, i.args) for i in understood.intents if i.tool in tools]


def _clarify(tools: set[str], message: str, language: str) -> str:
    """What to ask when no tool call fits: which item, or what to create."""
    agent = _owner(sorted(tools))
    table = agent.table if agent is not None and agent.table in lx.LABEL else None
    changes = any(
        cue.search(message)
        for cue in (lx.DELETE_CUE, lx.DONE_CUE, lx.PROGRESS_CUE, lx.TODO_CUE, lx.ARCHIVE_CUE)
    ) or any(p.search(message) for p in lx.RENAME)
    names_an_item = changes and not lx.CREATE_CUE.search(message)
    return answers.clarify(table, language, names_an_item=names_an_item)


def _estimate(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class DemoChatModel(BaseChatModel):
    """A deterministic local chat model speaking the agents' protocol."""

    model: str = DEMO_MODEL

    @property
    def _llm_type(self) -> str:
        return "adiuva-demo"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    # --- the model's "thinking" --------------------------------------------------
    def respond(self, messages: Sequence[BaseMessage], tools: Sequence[dict] | None) -> AIMessage:
        at = next(
            (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)),
            None,
        )
        human = str(messages[at].content) if at is not None else ""
        language = detect_language(human)
        if tools and isinstance(messages[-1], ToolMessage):
            return AIMessage(content=self._answer_from_tools(messages, language))
        system = "\n".join(str(m.content) for m in messages if isinstance(m, SystemMessage))
        if tools:
            names = {t["function"]["name"] for t in tools if "function" in t}
            context = _json_after(system, CONTEXT_HEADER) or {}
            previous = _json_after(system, PREVIOUS_RESULTS_HEADER) or []
            history = [
                ("user" if isinstance(m, HumanMessage) else "assistant", str(m.content))
                for m in messages[: at or 0]
                if isinstance(m, HumanMessage | AIMessage)
            ]
            calls = plan(human, context, previous, history, names)
            if calls:
                return AIMessage(
                    content="",
                    tool_calls=[
                        {"name": name, "args": args, "id": f"call_{i}_{name}", "type": "tool_call"}
                        for i, (name, args) in enumerate(calls)
                    ],
                )
            return AIMessage(content=_clarify(names, human, language))
        if ROUTER_INSTRUCTION in system:
            return AIMessage(content=", ".join(di.classify(human)))
        results = _json_after(human, AGENT_RESULTS_HEADER)
        if isinstance(results, list):
            answered = [str(r.get("response", "")).strip() for r in results if isinstance(r, dict)]
            request = human.split(AGENT_RESULTS_HEADER, 1)[0]
            fallback = answers.done(detect_language(request))
            return AIMessage(content=" ".join(a for a in answered if a) or fallback)
        return AIMessage(content=answers.greeting(language))

    @staticmethod
    def _answer_from_tools(messages: Sequence[BaseMessage], language: str) -> str:
        tool_names: dict[str, str] = {}
        for message in messages:
            if isinstance(message, AIMessage):
                for call in message.tool_calls:
                    tool_names[call.get("id") or call["name"]] = call["name"]
        results: list[str] = []
        for message in reversed(messages):
            if not isinstance(message, ToolMessage):
                break
            try:
                payload = json.loads(str(message.content))
            except json.JSONDecodeError:
                continue
            if language == "de":
                results.append(answers.german(tool_names.get(message.tool_call_id, ""), payload))
            else:
                results.append(str(payload.get("summary", "")))
        return " ".join(reversed([r for r in results if r])) or answers.done(language)

    def _usage(self, messages: Sequence[BaseMessage], reply: AIMessage) -> dict[str, int]:
        prompt = _estimate("".join(str(m.content) for m in messages))
        output = _estimate(str(reply.content) + json.dumps([c["args"] for c in reply.tool_calls]))
        return {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output}

    # --- replies, with LangChain's run around them or without ----------------------
    def reply(self, messages: Sequence[BaseMessage], tools: Sequence[dict] | None) -> AIMessage:
        """The reply, with its (estimated) usage and its cost: nothing."""
        reply = self.respond(messages, tools)
        reply.usage_metadata = self._usage(messages, reply)  # type: ignore[assignment]
        reply.response_metadata = {"model_name": DEMO_MODEL, "response_cost": 0.0}
        return reply

    def reply_chunks(
        self, messages: Sequence[BaseMessage], tools: Sequence[dict] | None
    ) -> Iterator[AIMessageChunk]:
        """The reply as a stream sends it: a chunk a token, the tool calls, the usage."""
        reply = self.reply(messages, tools)
        for token in _TOKEN.findall(str(reply.content)):
            yield AIMessageChunk(content=token)
        if reply.tool_calls:
            yield AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {
                        "name": call["name"],
                        "args": json.dumps(call["args"]),
                        "id": call["id"],
                        "index": index,
                        "type": "tool_call_chunk",
                    }
                    for index, call in enumerate(reply.tool_calls)
                ],
            )
        yield AIMessageChunk(content="", usage_metadata=reply.usage_metadata)
        yield AIMessageChunk(content="", chunk_position="last")

    def _chunks(
        self, messages: list[BaseMessage], kwargs: dict[str, Any]
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self.reply_chunks(messages, kwargs.get("tools")):
            if chunk.chunk_position != "last":  # LangChain's run adds its own last chunk
                yield ChatGenerationChunk(message=chunk)

    # --- BaseChatModel ------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(
            generations=[ChatGeneration(message=self.reply(messages, kwargs.get("tools")))]
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks(messages, kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages, kwargs):
            if run_manager and isinstance(chunk.message.content, str):
                await run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
            yield chunk
            # Let the event loop send each token as it is produced.
            await asyncio.sleep(0)
