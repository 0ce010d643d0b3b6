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
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

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

DEMO_MODEL = "demo"
ToolCall = tuple[str, dict[str, Any]]
_TOKEN = re.compile(r"\S+\s*|\s+")
_DESCRIPTION = re.compile(r"\b(?:description|described as)\b\s*(?::|is|to)?\s*(.+)$", re.I)


def _json_after(text: str, header: str) -> Any:
    if header not in text:
        return None
    line = text.split(header, 1)[1].strip().splitlines()
    try:
        return json.loads(line[0]) if line else None
    except json.JSONDecodeError:
        return None


class _Planner:
    """Which tool calls a capable model would make for `message`."""

    def __init__(self, message: str, context: dict[str, Any], previous: list[dict]) -> None:
        self.message = message
        self.context = context
        self.today = dt.date.fromisoformat(context.get("today") or dt.date.today().isoformat())
        self.created: dict[str, list[dict]] = {}
        for result in previous:
            for action in result.get("actions", []):
                if action.get("type") == "create_record":
                    row = {"id": action.get("id"), **action.get("data", {})}
                    self.created.setdefault(action.get("table"), []).append(row)

    def items(self, table: str) -> list[dict]:
        return [*self.context.get(table, []), *self.created.get(table, [])]

    def mentioned_project(self) -> dict | None:
        lowered = self.message.lower()
        named = [
            p for p in self.items("projects") if p.get("name") and p["name"].lower() in lowered
        ]
        if named:
            return max(named, key=lambda p: len(p["name"]))
        return self.created.get("projects", [None])[-1]

    def due(self) -> str | None:
        date = di.parse_date(self.message, self.today)
        return date.isoformat() if date else None

    def plan(self, tools: set[str]) -> list[ToolCall]:
        for agent_tool, method in (
            ("create_task", self.tasks),
            ("create_project", self.projects),
            ("create_checkpoint", self.checkpoints),
            ("create_note", self.notes),
        ):
            if agent_tool in tools:
                return [call for call in method() if call[0] in tools]
        return []

    def tasks(self) -> list[ToolCall]:
        m = self.message
        tasks = self.items("tasks")
        if re.search(r"\bcomments?\b", m, re.I):
            if di.DELETE.search(m):
                comment = di.find_item(self.items("comments"), m, "body")
                return [("delete_task_comment", {"comment_id": comment["id"]})] if comment else []
            task = di.find_item(tasks, m, "title")
            if task is None:
                return []
            if di.LIST.search(m) and not di.CREATE.search(m):
                return [("list_task_comments", {"task_id": task["id"]})]
            body = di.extract_body(m) or di.extract_title(m, ("comment",)) or m
            return [("add_task_comment", {"task_id": task["id"], "body": body})]
        if di.DELETE.search(m):
            task = di.find_item(tasks, m, "title")
            return [("delete_task", {"task_id": task["id"]})] if task else []
        target = di.find_item(tasks, m, "title")
        leads_with_create = re.match(
            r"^\W*(?:please\s+)?(?:add|create|make|new|remind me|schedule|i need to)\b", m, re.I
        )
        # "Move the report task … and make it high priority" changes a task, it adds none.
        changes_one = di.UPDATE.search(m) and target is not None
        if di.CREATE.search(m) and (leads_with_create or not changes_one):
            return self._create_tasks()
        if di.UPDATE.search(m):
            if target is None:
                return []
            changes: dict[str, Any] = {"task_id": target["id"]}
            if rename := re.search(r"\brename\b.*?\bto\s+(.+)$", m, re.I):
                changes["title"] = rename.group(1).strip(' ."“”')
            if status := di.parse_task_status(m):
                changes["status"] = status
            if priority := di.parse_priority(m):
                changes["priority"] = priority
            if due := self.due():
                changes["due_date"] = due
            return [("update_task", changes)] if len(changes) > 1 else []
        if re.search(r"\b(today|due now|overdue)\b", m, re.I):
            return [("list_tasks_due_today", {"include_overdue": True})]
        filters: dict[str, Any] = {}
        if priority := di.parse_priority(m):
            filters["priority"] = priority
        if re.search(r"\b(open|todo|to do|pending)\b", m, re.I):
            filters["status"] = "todo"
        elif status := di.parse_task_status(m):
            filters["status"] = status
        if project := self.mentioned_project():
            filters["project_id"] = project["id"]
        return [("list_tasks", filters)]

    def _create_tasks(self) -> list[ToolCall]:
        m = self.message
        listed = re.search(r"\b(?:tasks|todos)\s*(?::|called|named|for)\s*(.+)$", m, re.I)
        titles: list[str] = []
        if listed:
            parts = re.split(r",|;|\band\b", listed.group(1))
            titles = [t for t in (di._clean_title(p) for p in parts) if t]
        elif title := di.extract_title(m, ("task", "todo", "to-do", "reminder")):
            titles = [title]
        titles = [t for t in titles if t.lower() not in {"it", "them", "this", "that"}]
        base: dict[str, Any] = {}
        if priority := di.parse_priority(m):
            base["priority"] = priority
        if due := self.due():
            base["due_date"] = due
            if re.search(r"\bremind\b", m, re.I):
                base["remind"] = True
        if project := self.mentioned_project():
            base["project_id"] = project["id"]
        return [("create_task", {"title": title, **base}) for title in titles[:10]]

    def projects(self) -> list[ToolCall]:
        m = self.message
        projects = self.items("projects")
        if di.DELETE.search(m):
            project = di.find_item(projects, m, "name")
            if project is None:
                return []
            permanent = bool(re.search(r"\b(permanently|for good|completely|hard)\b", m, re.I))
            return [("delete_project", {"project_id": project["id"], "permanent": permanent})]
        if di.CREATE.search(m):
            name = di.extract_title(m, ("project",))
            if not name:
                return []
            call: dict[str, Any] = {"name": name}
            if described := _DESCRIPTION.search(m):
                call["description"] = described.group(1).strip()
            return [("create_project", call)]
        if di.UPDATE.search(m):
            project = di.find_item(projects, m, "name")
            if project is None:
                return []
            changes: dict[str, Any] = {"project_id": project["id"]}
            if rename := re.search(r"\brename\b.*?\bto\s+(.+)$", m, re.I):
                changes["name"] = rename.group(1).strip(' ."“”')
            if re.search(r"\b(unarchive|restore|reactivate)\b", m, re.I):
                changes["status"] = "active"
            if described := _DESCRIPTION.search(m):
                changes["description"] = described.group(1).strip()
            return [("update_project", changes)] if len(changes) > 1 else []
        if re.search(r"\b(all|archived|every)\b", m, re.I):
            return [("list_all_projects", {})]
        lowered = m.lower()
        named = [p for p in projects if p.get("name") and p["name"].lower() in lowered]
        if named:
            return [("get_project", {"project_id": named[0]["id"]})]
        return [("list_projects", {})]

    def checkpoints(self) -> list[ToolCall]:
        m = self.message
        checkpoints = self.items("checkpoints")
        if di.DELETE.search(m):
            cp = di.find_item(checkpoints, m, "title")
            return [("delete_checkpoint", {"checkpoint_id": cp["id"]})] if cp else []
        if di.CREATE.search(m):
            title = di.extract_title(m, ("checkpoint", "milestone"))
            project = self.mentioned_project()
            active = [p for p in self.items("projects") if p.get("status", "active") == "active"]
            if project is None and len(active) == 1:
                project = active[0]
            if not title or project is None:
                return []
            call: dict[str, Any] = {"project_id": project["id"], "title": title}
            if due := self.due():
                call["due_date"] = due
            return [("create_checkpoint", call)]
        if di.UPDATE.search(m):
            cp = di.find_item(checkpoints, m, "title")
            if cp is None:
                return []
            changes: dict[str, Any] = {"checkpoint_id": cp["id"]}
            if re.search(r"\bapprove", m, re.I):
                changes["approved"] = True
            if re.search(r"\bmissed\b", m, re.I):
                changes["status"] = "missed"
            elif re.search(r"\b(done|complete|completed|reached|finished)\b", m, re.I):
                changes["status"] = "reached"
            if due := self.due():
                changes["due_date"] = due
            if rename := re.search(r"\brename\b.*?\bto\s+(.+)$", m, re.I):
                changes["title"] = rename.group(1).strip(' ."“”')
            return [("update_checkpoint", changes)] if len(changes) > 1 else []
        call = {}
        if project := self.mentioned_project():
            call["project_id"] = project["id"]
        return [("list_checkpoints", call)]

    def notes(self) -> list[ToolCall]:
        m = self.message
        notes = self.items("notes")
        if di.DELETE.search(m):
            note = di.find_item(notes, m, "title")
            return [("delete_note", {"note_id": note["id"]})] if note else []
        if re.search(r"\b(append|add to|update|edit|rename)\b", m, re.I) and (
            note := di.find_item(notes, m, "title")
        ):
            changes: dict[str, Any] = {"note_id": note["id"]}
            if rename := re.search(r"\brename\b.*?\bto\s+(.+)$", m, re.I):
                changes["title"] = rename.group(1).strip(' ."“”')
            elif body := di.extract_body(m):
                changes["append"] = body
            return [("update_note", changes)] if len(changes) > 1 else []
        if di.CREATE.search(m):
            body = di.extract_body(m) or ""
            head = m.split(":", 1)[0] if body else m
            title = di.extract_title(head, ("note",)) or " ".join(body.split()[:6])
            if not title:
                return []
            call: dict[str, Any] = {"title": title, "body": body}
            if project := self.mentioned_project():
                call["project_id"] = project["id"]
            return [("create_note", call)]
        lowered = m.lower()
        named = [n for n in notes if n.get("title") and n["title"].lower() in lowered]
        if named and re.search(r"\b(show|open|read|get|what)\b", m, re.I):
            return [("get_note", {"note_id": named[0]["id"]})]
        call = {}
        if project := self.mentioned_project():
            call["project_id"] = project["id"]
        return [("list_notes", call)]


_CLARIFY = {
    "create_task": (
        "Which task should I add? Give me its title, for example "
        "“add a task to call Anna tomorrow”."
    ),
    "create_project": (
        "Which project do you mean? Name it, for example “archive the Website project”."
    ),
    "create_checkpoint": "Which project should the checkpoint belong to, and what is it called?",
    "create_note": "Which note do you mean? Give me its title.",
}


_NOUN_OF_TOOL = {
    "create_task": "task",
    "create_project": "project",
    "create_checkpoint": "checkpoint",
    "create_note": "note",
}


def _clarify(tools: set[str], message: str) -> str:
    """What to ask when no tool call fits: which item, or what to create."""
    tool = next((t for t in _NOUN_OF_TOOL if t in tools), None)
    if tool is None:
        return "Could you say a little more about what to do?"
    if (di.UPDATE.search(message) or di.DELETE.search(message)) and not di.CREATE.search(message):
        noun = _NOUN_OF_TOOL[tool]
        return (
            f"I could not find that {noun} in your workspace. "
            f"Name the {noun} as it appears in your list."
        )
    return _CLARIFY[tool]


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
        if tools and isinstance(messages[-1], ToolMessage):
            return AIMessage(content=self._answer_from_tools(messages))
        system = "\n".join(str(m.content) for m in messages if isinstance(m, SystemMessage))
        human = next(
            (str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), ""
        )
        if tools:
            names = {t["function"]["name"] for t in tools if "function" in t}
            context = _json_after(system, CONTEXT_HEADER) or {}
            previous = _json_after(system, PREVIOUS_RESULTS_HEADER) or []
            calls = _Planner(human, context, previous).plan(names)
            if calls:
                return AIMessage(
                    content="",
                    tool_calls=[
                        {"name": name, "args": args, "id": f"call_{i}_{name}", "type": "tool_call"}
                        for i, (name, args) in enumerate(calls)
                    ],
                )
            return AIMessage(content=_clarify(names, human))
        if ROUTER_INSTRUCTION in system:
            return AIMessage(content=", ".join(di.classify(human)))
        results = _json_after(human, AGENT_RESULTS_HEADER)
        if isinstance(results, list):
            answers = [str(r.get("response", "")).strip() for r in results if isinstance(r, dict)]
            return AIMessage(content=" ".join(a for a in answers if a) or "Done.")
        return AIMessage(content="I can help with your tasks, projects, checkpoints and notes.")

    @staticmethod
    def _answer_from_tools(messages: Sequence[BaseMessage]) -> str:
        results: list[str] = []
        for message in reversed(messages):
            if not isinstance(message, ToolMessage):
                break
            try:
                payload = json.loads(str(message.content))
            except json.JSONDecodeError:
                continue
            results.append(str(payload.get("summary", "")))
        return " ".join(reversed([r for r in results if r])) or "Done."

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
