"""Demo examples: one example conversation per agent, the demo fallback's canned answers.

A stored example holds only its inputs: the agent, its metadata examples (the
messages, sent in order) and the sample workspace they start from. Its turns
(answers and actions) and the fallback's canned answer are rendered from those
inputs by the current code when they are read, so a change of wording or of an
agent reaches every deployment, rows stored by earlier versions included (their
stored texts are ignored).

Rendering sends the messages in order through the agent, driven by the offline
`demo` model — never the configured upstream — so it needs no network, keys or
credits. Every conversation starts from the same small sample workspace on a fixed
date, and each turn sees the previous turns' actions applied and the history so
far: "Mark the call Anna task as done" finds the task the first turn created.
Runs are deterministic; only the ids minted for new records (and their creation
timestamps) differ between runs. A rendering is kept for the process's life.

Rows are stored with `INSERT … ON CONFLICT DO NOTHING` on the agent, so `init`
is idempotent and two concurrent inits store each agent's example once.

The canned answer is what the demo fallback says for that agent when the demo
model finds nothing to do with a visitor's message (see app/chat/orchestrator.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.chat.agents import ChatAgent, Workspace, registry
from app.chat.llm import DEMO_CLIENT, ModelCaller
from app.chat.schemas import Action, ChatContext, HistoryMessage
from app.demo.repository import DemoExampleRepository
from app.demo.schemas import (
    DemoExampleOut,
    ExamplesInitResult,
    ExamplesInitStatus,
    ExampleTurn,
)
from app.models import DemoExample
from app.models.base import utcnow

# A Monday: "tomorrow" and "next Friday" resolve to the same dates on every run.
EXAMPLE_TODAY = dt.date(2026, 1, 5)

SEED_CONTEXT: dict[str, Any] = {
    "today": EXAMPLE_TODAY.isoformat(),
    "projects": [
        {"id": "project_garden_party", "name": "Garden party", "status": "active"},
        {"id": "project_website", "name": "Website relaunch", "status": "active"},
    ],
    "tasks": [
        {
            "id": "task_invitations",
            "title": "Send the invitations",
            "status": "todo",
            "priority": "high",
            "due_date": EXAMPLE_TODAY.isoformat(),
            "project_id": "project_garden_party",
        },
        {
            "id": "task_homepage_copy",
            "title": "Write the homepage copy",
            "status": "in_progress",
            "priority": "medium",
            "due_date": (EXAMPLE_TODAY + dt.timedelta(days=3)).isoformat(),
            "project_id": "project_website",
        },
    ],
    "checkpoints": [
        {
            "id": "checkpoint_launch",
            "title": "Launch",
            "project_id": "project_website",
            "due_date": (EXAMPLE_TODAY + dt.timedelta(days=14)).isoformat(),
        }
    ],
    "notes": [
        {
            "id": "note_menu_ideas",
            "title": "Menu ideas",
            "body": "Grilled vegetables, lemonade, a cake.",
            "project_id": "project_garden_party",
        }
    ],
}


def _after(context: ChatContext, actions: Sequence[Action]) -> ChatContext:
    """The context with a turn's actions applied, as the client would apply them."""
    workspace = Workspace(context)
    for action in actions:
        workspace.apply(action)
    return ChatContext.model_validate({"today": workspace.today, **workspace.tables})


async def run_conversation(
    agent: ChatAgent, messages: Sequence[str], context: dict[str, Any]
) -> list[ExampleTurn]:
    """The agent's answers to `messages`, in order, on the offline demo model."""
    llm = ModelCaller(DEMO_CLIENT, None)
    current = ChatContext.model_validate(context)
    history: list[HistoryMessage] = []
    turns: list[ExampleTurn] = []
    for message in messages:
        result = await agent.handle(message, current, llm=llm, history=history)
        turns.append(
            ExampleTurn(
                message=message,
                response=result.response,
                actions=[a.model_dump(mode="json") for a in result.actions],
            )
        )
        current = _after(current, result.actions)
        history = [
            *history,
            HistoryMessage(role="user", content=message),
            HistoryMessage(role="assistant", content=result.response),
        ][-20:]
    return turns


def canned_answer(agent: ChatAgent, turns: Sequence[ExampleTurn]) -> str:
    """The fallback's answer when the demo model cannot act on a visitor's message."""
    turn = next((t for t in turns if t.actions), turns[0])
    noun = agent.name.removesuffix("_agent")
    return (
        "Demo mode (today's AI quota is used up): I could not act on that message offline. "
        f"Here is what the {noun} agent does — asked “{turn.message}”, it answered: "
        f"“{turn.response}” Name a {noun} as it appears in your workspace, or send your "
        "own key in X-LLM-API-KEY."
    )


@dataclass(frozen=True)
class RenderedExample:
    agent: str
    messages: list[str]
    context: dict[str, Any]
    turns: list[ExampleTurn]
    canned_answer: str


# Inputs (as JSON) → their rendering, for this process: the code cannot change under it.
_rendered: dict[str, RenderedExample] = {}
_MAX_RENDERED = 256


def stored_inputs(row: DemoExample) -> tuple[list[str], dict[str, Any]]:
    """A stored example's inputs: its messages and starting workspace (any version's row)."""
    request = row.request if isinstance(row.request, dict) else {}
    messages = [str(m) for m in request.get("messages") or []]
    if not messages and isinstance(row.response, dict):
        messages = [str(t.get("message", "")) for t in row.response.get("turns", [])]
    context = request.get("context")
    return [m for m in messages if m], dict(context) if isinstance(context, dict) else SEED_CONTEXT


async def render(row: DemoExample) -> RenderedExample | None:
    """The example's turns and canned answer by the current code; None when its agent is
    no longer registered or it has no messages."""
    if row.agent not in registry:
        return None
    messages, context = stored_inputs(row)
    if not messages:
        return None
    key = json.dumps([row.agent, messages, context], sort_keys=True, default=str)
    rendered = _rendered.get(key)
    if rendered is None:
        agent = registry.get(row.agent)
        turns = await run_conversation(agent, messages, context)
        rendered = RenderedExample(row.agent, messages, context, turns, canned_answer(agent, turns))
        if len(_rendered) >= _MAX_RENDERED:
            _rendered.clear()
        _rendered[key] = rendered
    return rendered


async def canned_answers(rows: Sequence[DemoExample]) -> dict[str, str]:
    """Agent → the demo fallback's answer, rendered from the stored examples."""
    answers: dict[str, str] = {}
    for row in rows:
        if (rendered := await render(row)) is not None:
            answers[rendered.agent] = rendered.canned_answer
    return answers


class DemoExampleService:
    def __init__(self, session: AsyncSession) -> None:
        self.examples = DemoExampleRepository(session)

    async def status(self) -> ExamplesInitStatus:
        stored = await self.examples.agents()
        names = registry.names()
        missing = [n for n in names if n not in stored]
        return ExamplesInitStatus(
            can_init=bool(missing),
            total_agents=len(names),
            agents_with_examples=[n for n in names if n in stored],
            missing=missing,
        )

    async def list(self) -> list[DemoExampleOut]:
        examples: list[DemoExampleOut] = []
        for row in await self.examples.all():
            rendered = await render(row)
            if rendered is not None:
                examples.append(
                    DemoExampleOut(
                        agent=rendered.agent,
                        messages=rendered.messages,
                        context=rendered.context,
                        turns=rendered.turns,
                        canned_answer=rendered.canned_answer,
                        created_at=row.created_at,
                    )
                )
        return examples

    async def init(self) -> ExamplesInitResult:
        """Store the inputs of the examples of the agents that have none; skip the rest."""
        before = await self.status()
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for name in before.missing:
            agent = registry.get(name)
            rows.append(
                {
                    "agent": name,
                    "request": {"messages": list(agent.examples), "context": SEED_CONTEXT},
                    # What a turn answers is rendered when read, never stored.
                    "response": {"turns": [{"message": m} for m in agent.examples]},
                    "created_at": now,
                    "updated_at": now,
                }
            )
        created = await self.examples.insert_missing(rows)
        after = await self.status()
        return ExamplesInitResult(
            **after.model_dump(),
            created=created,
            skipped=[n for n in registry.names() if n not in created],
        )
