"""The agent registry: `@register`, `get`, `list_agents`, `call_agent`."""

from __future__ import annotations

from collections.abc import Sequence

from app.chat.agents.base import AgentResult, ChatAgent, Workspace
from app.chat.llm import ModelCaller
from app.chat.schemas import ChatContext, HistoryMessage
from app.errors import NotFound


class AgentRegistry:
    def __init__(self) -> None:
        self._agents: dict[str, ChatAgent] = {}

    def register(self, cls: type[ChatAgent]) -> type[ChatAgent]:
        if cls.name in self._agents:
            raise ValueError(f"agent {cls.name!r} is already registered")
        self._agents[cls.name] = cls()
        return cls

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


registry = AgentRegistry()
register = registry.register
