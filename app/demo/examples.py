"""Demo examples: one example conversation per agent, the demo fallback's canned answers.

Each agent's conversation sends its metadata examples (`GET /api/v1/agents`) in
order through the real orchestrator, driven by the offline `demo` model — never
the configured upstream — so examples are made without network, keys or credits.
Every conversation starts from the same small sample workspace on a fixed date,
and each turn sees the previous turns' actions applied and the history so far:
"Mark the call Anna task as done" finds the task the first turn created. Runs are
deterministic; only the ids minted for new records (and their creation
timestamps) differ between runs.

Rows are stored with `INSERT … ON CONFLICT DO NOTHING` on the agent, so `init`
is idempotent and two concurrent inits store each agent's example once.

The stored `canned_answer` is what the demo fallback says for that agent when the
demo model finds nothing to do with a visitor's message (see app/chat/orchestrator.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.tiers import TIER_ORDER, TierTable
from app.chat.agents import ChatAgent, Workspace, registry
from app.chat.orchestrator import Orchestrator
from app.chat.plans import PlanService
from app.chat.schemas import Action, ChatContext, ChatRequest, ChatResponse, HistoryMessage
from app.chat.service import demo_orchestrator
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


def full_access_tier(tiers: TierTable):
    """The first tier that may use every agent: examples exist for all of them."""
    names = set(registry.names())
    for tier in TIER_ORDER:
        if names <= set(tiers[tier].agents):
            return tier
    raise RuntimeError("no tier may use every agent; demo examples cannot be generated")


def _after(context: ChatContext, actions: Sequence[Action]) -> ChatContext:
    """The context with a turn's actions applied, as the client would apply them."""
    workspace = Workspace(context)
    for action in actions:
        workspace.apply(action)
    return ChatContext.model_validate({"today": workspace.today, **workspace.tables})


async def run_conversation(orchestrator: Orchestrator, agent: ChatAgent) -> list[ExampleTurn]:
    context = ChatContext.model_validate(SEED_CONTEXT)
    history: list[HistoryMessage] = []
    turns: list[ExampleTurn] = []
    for message in agent.examples:
        request = ChatRequest(message=message, context=context, history=history, agent=agent.name)
        result = await orchestrator.orchestrate(request)
        assert isinstance(result, ChatResponse)  # direct mode
        turns.append(
            ExampleTurn(
                message=message,
                response=result.response,
                actions=[a.model_dump(mode="json") for a in result.actions],
            )
        )
        context = _after(context, result.actions)
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


def _out(row: DemoExample) -> DemoExampleOut:
    return DemoExampleOut(
        agent=row.agent,
        messages=list(row.request.get("messages", [])),
        context=dict(row.request.get("context", {})),
        turns=[ExampleTurn.model_validate(t) for t in row.response.get("turns", [])],
        canned_answer=str(row.response.get("canned_answer", "")),
        created_at=row.created_at,
    )


class DemoExampleService:
    def __init__(self, session: AsyncSession, tiers: TierTable, plans: PlanService) -> None:
        self.examples = DemoExampleRepository(session)
        self.tiers = tiers
        self.plans = plans

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
        return [_out(row) for row in await self.examples.all()]

    async def init(self) -> ExamplesInitResult:
        """Generate and store the examples of the agents that have none; skip the rest."""
        before = await self.status()
        orchestrator = demo_orchestrator(
            self.tiers, self.plans, full_access_tier(self.tiers), demo=False
        )
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for name in before.missing:
            agent = registry.get(name)
            turns = await run_conversation(orchestrator, agent)
            rows.append(
                {
                    "agent": name,
                    "request": {"messages": list(agent.examples), "context": SEED_CONTEXT},
                    "response": {
                        "turns": [t.model_dump(mode="json") for t in turns],
                        "canned_answer": canned_answer(agent, turns),
                        "model": "demo",
                    },
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
