"""Agent building blocks: the workspace view, tools, and the shared tool loop."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import BaseModel, ValidationError

from app.chat.demo_model import DemoTurn, ToolCall
from app.chat.llm import ModelCaller, ToolSchemas
from app.chat.prompts import AGENT_RULES, CONTEXT_HEADER, PREVIOUS_RESULTS_HEADER
from app.chat.schemas import Action, ChatContext, HistoryMessage
from app.models import BillingTier

TABLES = ("tasks", "projects", "checkpoints", "notes", "comments")
# How much of each table the prompt carries; the tools still see all of it.
PROMPT_ITEMS_PER_TABLE = 200
_PROMPT_FIELDS = ("id", "title", "name", "status", "priority", "due_date", "project_id", "task_id")


def new_id(kind: str) -> str:
    """An id for a record the client will create: `task_3f9c…` (a lowercase identifier)."""
    return f"{kind}_{uuid.uuid4().hex[:16]}"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Workspace:
    """The client's data for one request, plus what earlier tool calls created.

    Read-only as far as the client is concerned: tools describe changes as actions.
    """

    def __init__(self, context: ChatContext | None) -> None:
        context = context or ChatContext()
        self.today = context.today or dt.datetime.now(dt.UTC).date()
        self.tables: dict[str, list[dict[str, Any]]] = {
            name: [item.model_dump(mode="json") for item in getattr(context, name)]
            for name in TABLES
        }
        # Clients that keep comments inside their task get them found all the same.
        for task in self.tables["tasks"]:
            for comment in task.get("comments") or []:
                if isinstance(comment, dict) and comment.get("id"):
                    self.tables["comments"].append({**comment, "task_id": task["id"]})

    def items(self, table: str) -> list[dict[str, Any]]:
        # A table no client context carries (an agent's own kind of record) starts empty.
        return self.tables.setdefault(table, [])

    def find(self, table: str, item_id: str) -> dict[str, Any] | None:
        return next((i for i in self.items(table) if i.get("id") == item_id), None)

    def apply(self, action: Action) -> None:
        """Mirror an action, so later tools (and later agents) see its effect."""
        if action.table is None:
            return
        rows = self.items(action.table)
        if action.type == "create_record":
            rows.append({"id": action.id, **action.data})
        elif action.type == "update_record" and (row := self.find(action.table, action.id or "")):
            row.update(action.data)
        elif action.type == "delete_record":
            self.tables[action.table] = [r for r in rows if r.get("id") != action.id]

    def prompt_digest(self) -> str:
        digest = {
            name: [
                {k: v for k, v in row.items() if k in _PROMPT_FIELDS and v is not None}
                for row in rows[:PROMPT_ITEMS_PER_TABLE]
            ]
            for name, rows in self.tables.items()
        }
        return json.dumps({"today": self.today.isoformat(), **digest}, separators=(",", ":"))


@dataclass
class ToolOutcome:
    summary: str
    data: Any = None
    actions: list[Action] = field(default_factory=list)
    ok: bool = True

    def to_message(self) -> str:
        return json.dumps(
            {"ok": self.ok, "summary": self.summary, "data": self.data},
            default=str,
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class AgentTool:
    name: str
    description: str
    args_schema: type[BaseModel]
    run: Callable[[Workspace, Any], ToolOutcome]

    @cached_property
    def _input_schema(self) -> dict[str, Any]:
        return self.args_schema.model_json_schema()

    def input_schema(self) -> dict[str, Any]:
        """The tool's JSON schema, generated once; read it, never change it."""
        return self._input_schema

    @cached_property
    def _openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.input_schema(),
            },
        }

    def openai_schema(self) -> dict[str, Any]:
        """The tool as an OpenAI function, built once; read it, never change it."""
        return self._openai_schema

    def __call__(self, workspace: Workspace, arguments: dict[str, Any]) -> ToolOutcome:
        try:
            args = self.args_schema.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            return ToolOutcome(f"Invalid arguments for {self.name}: {problems}", ok=False)
        return self.run(workspace, args)


@dataclass
class AgentResult:
    agent: str
    response: str
    actions: list[Action] = field(default_factory=list)
    tool_calls: int = 0

    def as_previous(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "response": self.response,
            "actions": [a.model_dump() for a in self.actions],
        }


def _history_messages(history: Sequence[HistoryMessage]) -> list[BaseMessage]:
    return [HumanMessage(h.content) if h.role == "user" else AIMessage(h.content) for h in history]


class ChatAgent(ABC):
    """An agent, declared once: everything keyed by its name is derived from this class.

    The registry (`app/chat/agents/registry.py`) reads these declarations to build the
    system prompts and plan templates (`app/chat/prompts.py`), the tier availability
    (`app/billing/tiers.py`), the `AgentName` enum, the offline model's routing nouns and
    planner dispatch, and the demo examples; its start-up check refuses a declaration
    that does not fit the others.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    # Sent in order as the agent's demo example conversation; also its metadata examples.
    examples: ClassVar[tuple[str, ...]]
    tags: ClassVar[tuple[str, ...]]
    # What the agent is, for its system prompt; the rules every agent follows are added.
    prompt: ClassVar[str]
    # The table its records live in: a plan applies the agent's drafts to it.
    table: ClassVar[str]
    # Routing vocabulary: table → the English and German nouns that name its records.
    nouns: ClassVar[Mapping[str, tuple[str, ...]]]
    # Plan templates (server-side text, never sent): id → text. `tpl_<name>_default`
    # drafts the changes for a message (`{message}`); playbooks may use the others.
    templates: ClassVar[Mapping[str, str]]
    minimum_tier: ClassVar[BillingTier] = BillingTier.FREE

    @property
    def default_template(self) -> str:
        return f"tpl_{self.name}_default"

    def demo_plan(self, turn: DemoTurn) -> list[ToolCall] | None:
        """The offline demo model's tool calls for this agent, or None for the shared
        language understanding (`app/chat/understanding`), which knows the built-in
        agents' tools."""
        return None

    @abstractmethod
    def get_tools(self) -> list[AgentTool]:
        """The agent's tools, each with its pydantic input schema."""

    # Agents are built once, at registration: their tools and the tools' schemas are
    # built on first use and shared by every request after it.
    @cached_property
    def tools(self) -> tuple[AgentTool, ...]:
        return tuple(self.get_tools())

    @cached_property
    def tools_by_name(self) -> dict[str, AgentTool]:
        return {tool.name: tool for tool in self.tools}

    @cached_property
    def tool_schemas(self) -> ToolSchemas:
        return ToolSchemas(self.name, tuple(tool.openai_schema() for tool in self.tools))

    @property
    def system_prompt(self) -> str:
        return f"{self.prompt} {AGENT_RULES}"

    def build_messages(
        self,
        query: str,
        workspace: Workspace,
        previous_results: Sequence[AgentResult] = (),
        history: Sequence[HistoryMessage] = (),
    ) -> list[BaseMessage]:
        # One system message: several providers accept no more than one.
        system = f"{self.system_prompt}\n\n{CONTEXT_HEADER}\n{workspace.prompt_digest()}"
        if previous_results:
            previous = json.dumps([r.as_previous() for r in previous_results], default=str)
            system += f"\n\n{PREVIOUS_RESULTS_HEADER}\n{previous}"
        return [SystemMessage(system), *_history_messages(history), HumanMessage(query)]

    async def handle(
        self,
        query: str,
        context: ChatContext | Workspace | None,
        *,
        llm: ModelCaller,
        previous_results: Sequence[AgentResult] = (),
        history: Sequence[HistoryMessage] = (),
    ) -> AgentResult:
        async with aclosing(
            self.stream(
                query,
                context,
                llm=llm,
                previous_results=previous_results,
                history=history,
                stream=False,
            )
        ) as events:
            async for event in events:
                if isinstance(event, AgentResult):
                    return event
        raise RuntimeError("the tool loop ended without a result")

    async def stream(
        self,
        query: str,
        context: ChatContext | Workspace | None,
        *,
        llm: ModelCaller,
        previous_results: Sequence[AgentResult] = (),
        history: Sequence[HistoryMessage] = (),
        stream: bool = True,
    ) -> AsyncIterator[str | AgentResult]:
        """Text tokens as the model produces them, then the `AgentResult`."""
        workspace = context if isinstance(context, Workspace) else Workspace(context)
        messages = self.build_messages(query, workspace, previous_results, history)
        async with aclosing(self._tool_loop(llm, messages, workspace, stream=stream)) as events:
            async for event in events:
                yield event

    async def _tool_loop(
        self,
        llm: ModelCaller,
        messages: list[BaseMessage],
        workspace: Workspace,
        *,
        max_iter: int = 5,
        stream: bool = False,
    ) -> AsyncIterator[str | AgentResult]:
        by_name = self.tools_by_name
        schemas = self.tool_schemas
        actions: list[Action] = []
        summaries: list[str] = []
        calls = 0
        for _ in range(max_iter):
            if stream:
                reply: AIMessage | AIMessageChunk | None = None
                async with aclosing(llm.stream(messages, schemas)) as chunks:
                    async for chunk in chunks:
                        reply = chunk if reply is None else reply + chunk
                        if isinstance(chunk.content, str) and chunk.content:
                            yield chunk.content
                reply = reply or AIMessageChunk(content="")
            else:
                reply = await llm.invoke(messages, schemas)
            if not reply.tool_calls:
                yield AgentResult(self.name, message_text(reply.content), actions, calls)
                return
            messages.append(
                AIMessage(content=message_text(reply.content), tool_calls=list(reply.tool_calls))
            )
            for call in reply.tool_calls:
                calls += 1
                tool = by_name.get(call["name"])
                if tool is None:
                    outcome = ToolOutcome(f"There is no tool named {call['name']}.", ok=False)
                else:
                    outcome = tool(workspace, call.get("args") or {})
                for action in outcome.actions:
                    workspace.apply(action)
                actions.extend(outcome.actions)
                if outcome.ok:
                    summaries.append(outcome.summary)
                messages.append(
                    ToolMessage(outcome.to_message(), tool_call_id=call.get("id") or call["name"])
                )
        # Still calling tools after max_iter rounds: stop and report what was done.
        text = " ".join(summaries) or "I could not complete that request."
        if stream:
            yield text
        yield AgentResult(self.name, text, actions, calls)


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)
