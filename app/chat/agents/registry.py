"""The agent registry: `@register`, `get`, `list_agents`, `call_agent`, and the tables
derived from the agents' declarations.

An agent is declared once, on its class (`ChatAgent`). Registering it updates the
tables of the offline model that are read per word or per call (routing nouns,
planner dispatch, `app.chat.demo_intent.learn` and `app.chat.demo_model.learn`);
the rest (system prompts, plan templates, tier availability, `AgentName`) read the
registry when used. `check()` runs at start-up and refuses, in one message, any
declaration that does not fit the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.chat import demo_intent, demo_model
from app.chat.agents.base import AgentResult, ChatAgent, Workspace
from app.chat.llm import ModelCaller
from app.chat.schemas import ChatContext, HistoryMessage, Playbook
from app.errors import NotFound
from app.models import BillingTier


class AgentDeclarationError(RuntimeError):
    """Registered agents that do not fit together; the message lists every problem."""


class AgentRegistry:
    def __init__(self) -> None:
        self._agents: dict[str, ChatAgent] = {}

    def register(self, cls: type[ChatAgent]) -> type[ChatAgent]:
        if cls.name in self._agents:
            raise ValueError(f"agent {cls.name!r} is already registered")
        self._agents[cls.name] = cls()
        self._publish()
        return cls

    def unregister(self, name: str) -> None:
        """Take an agent out again (and out of every derived table)."""
        self._agents.pop(name, None)
        self._publish()

    def _publish(self) -> None:
        agents = self.list_agents()
        demo_intent.learn((a.name, a.nouns) for a in agents)
        demo_model.learn(agents)

    def get(self, name: str) -> ChatAgent:
        try:
            return self._agents[name]
        except KeyError:
            raise NotFound(f"No agent named {name!r}.", error="agent_not_found") from None

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def list_agents(self) -> list[ChatAgent]:
        return list(self._agents.values())

    def names(self) -> list[str]:
        return list(self._agents)

    # --- tables derived from the declarations -----------------------------------------
    def system_prompts(self) -> dict[str, str]:
        return {a.name: a.system_prompt for a in self._agents.values()}

    def templates(self) -> dict[str, str]:
        """Every agent's plan templates by id (`check()` refuses an id declared twice)."""
        merged: dict[str, str] = {}
        for agent in self._agents.values():
            for template_id, text in agent.templates.items():
                merged.setdefault(template_id, text)
        return merged

    def minimum_tiers(self) -> dict[str, BillingTier]:
        return {a.name: a.minimum_tier for a in self._agents.values()}

    def tables(self) -> dict[str, str]:
        """Agent → the table its plan drafts apply to."""
        return {a.name: a.table for a in self._agents.values()}

    def check(self, template_refs: Iterable[tuple[str, str]] = ()) -> None:
        """Refuse inconsistent declarations at start-up, every problem in one message.

        `template_refs` are (who, template id) pairs of what else uses templates (the
        playbooks); each must be declared by an agent.
        """
        problems: list[str] = []
        seen_templates: dict[str, str] = {}
        seen_tools: dict[str, str] = {}
        seen_nouns: dict[str, str] = {}
        for agent in self._agents.values():
            name = agent.name
            for attribute in ("title", "description", "prompt", "table"):
                if not str(getattr(agent, attribute, "") or "").strip():
                    problems.append(f"{name} declares no {attribute}")
            if not agent.examples:
                problems.append(f"{name} declares no examples")
            if not isinstance(getattr(agent, "minimum_tier", None), BillingTier):
                problems.append(f"{name}: minimum_tier is not a billing tier")
            if not agent.tools:
                problems.append(f"{name} has no tools")
            for tool in agent.tools:
                if tool.name in seen_tools:
                    owner = seen_tools[tool.name]
                    problems.append(f"tool {tool.name!r} of {name} is also {owner}'s")
                seen_tools.setdefault(tool.name, name)
            templates = dict(getattr(agent, "templates", {}) or {})
            if agent.default_template not in templates:
                problems.append(f"{name} declares no template {agent.default_template!r}")
            for template_id in templates:
                if template_id in seen_templates:
                    problems.append(
                        f"template {template_id!r} is declared by both "
                        f"{seen_templates[template_id]} and {name}"
                    )
                seen_templates.setdefault(template_id, name)
            nouns = getattr(agent, "nouns", {}) or {}
            if not any(nouns.values()):
                problems.append(f"{name} declares no routing nouns")
            for words in nouns.values():
                for word in words:
                    owner = seen_nouns.setdefault(word.lower(), name)
                    if owner != name:
                        problems.append(f"noun {word!r} routes to both {owner} and {name}")
        for who, template_id in template_refs:
            if template_id not in seen_templates:
                problems.append(f"{who} uses template {template_id!r}, which no agent declares")
        if not self._agents:
            problems.append("no agent is registered")
        if problems:
            raise AgentDeclarationError(
                "The chat agents are declared inconsistently: " + "; ".join(problems) + "."
            )

    async def call_agent(
        self,
        name: str,
        query: str,
        context: ChatContext | Workspace | None,
        *,
        llm: ModelCaller,
        previous_results: Sequence[AgentResult] = (),
        history: Sequence[HistoryMessage] = (),
    ) -> AgentResult:
        return await self.get(name).handle(
            query, context, llm=llm, previous_results=previous_results, history=history
        )


def playbook_template_refs(playbooks: Iterable[Playbook]) -> list[tuple[str, str]]:
    """(playbook, template id) for each llm step of these playbooks."""
    return [
        (f"playbook {playbook.id!r}", step.template_id)
        for playbook in playbooks
        for step in playbook.steps
        if step.template_id
    ]


registry = AgentRegistry()
register = registry.register
