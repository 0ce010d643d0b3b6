"""The orchestrator: classify intent, route to one agent or a pipeline, or build a plan."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from app.billing.tiers import Feature, TierTable
from app.chat.agents import AgentRegistry, AgentResult, Workspace
from app.chat.agents.base import message_text
from app.chat.llm import ModelCaller
from app.chat.plans import PlanService
from app.chat.prompts import AGENT_RESULTS_HEADER, ROUTER_PROMPT, SYNTHESIS_PROMPT
from app.chat.schemas import (
    ChatRequest,
    ChatResponse,
    DoneFrame,
    ExecutionPlan,
    HistoryMessage,
    TokenFrame,
)
from app.models import BillingTier

FALLBACK_AGENT = "task_agent"
_TOKEN = re.compile(r"\S+\s*|\s+")
_PLAYBOOK_HINTS = (
    ("generate_weekly_note", re.compile(r"\bweek(ly)?\b.*\b(note|summary|review)\b", re.I)),
    (
        "create_tasks_from_project",
        re.compile(r"\b(tasks? from|extract tasks|break down)\b.*\bproject\b", re.I),
    ),
)


class Orchestrator:
    def __init__(
        self,
        *,
        llm: ModelCaller,
        router: ModelCaller,
        registry: AgentRegistry,
        tiers: TierTable,
        tier: BillingTier,
        plans: PlanService,
        demo: bool = False,
        canned: Mapping[str, str] | None = None,
    ) -> None:
        self.llm = llm
        self.router = router
        self.registry = registry
        self.tiers = tiers
        self.tier = tier
        self.plans = plans
        self.demo = demo
        # Demo fallback: agent → a canned answer, used when the demo model finds no
        # tool call for the message (it could only ask the user to rephrase).
        self.canned = canned or {}

    async def classify_intent(self, message: str) -> list[str]:
        """Agent names in the order they should run; `task_agent` when unsure."""
        catalog = "\n".join(f"- {a.name}: {a.description}" for a in self.registry.list_agents())
        reply = await self.router.invoke(
            [SystemMessage(ROUTER_PROMPT.format(catalog=catalog)), HumanMessage(message)]
        )
        names = self.registry.names()
        found: list[str] = []
        for match in re.finditer(r"\b(" + "|".join(names) + r")\b", message_text(reply.content)):
            if match.group(1) not in found:
                found.append(match.group(1))
        return found or [FALLBACK_AGENT]

    async def _agents_for(self, request: ChatRequest) -> list[str]:
        agents = [request.agent] if request.agent else await self.classify_intent(request.message)
        for agent in agents:
            # Free tier: three agents. Refused with 403 rather than silently rerouted, so
            # the user learns why a checkpoint request did nothing.
            self.tiers.require_agent(self.tier, agent)
        return agents

    async def route_single(
        self, agent: str, message: str, context: Any, history: Sequence[HistoryMessage] = ()
    ) -> ChatResponse:
        result = await self.registry.call_agent(
            agent, message, context, llm=self.llm, history=history
        )
        response = result.response
        if result.tool_calls == 0 and agent in self.canned:
            response = self.canned[agent]
        return ChatResponse(response=response, actions=result.actions, agent=agent, demo=self.demo)

    async def _run_pipeline(
        self, agents: Sequence[str], message: str, context: Any, history: Sequence[HistoryMessage]
    ) -> list[AgentResult]:
        workspace = context if isinstance(context, Workspace) else Workspace(context)
        results: list[AgentResult] = []
        for name in agents:
            results.append(
                await self.registry.call_agent(
                    name,
                    message,
                    workspace,
                    llm=self.llm,
                    previous_results=results,
                    history=history,
                )
            )
        return results

    def _synthesis_messages(self, message: str, results: Sequence[AgentResult]):
        merged = json.dumps(
            [{"agent": r.agent, "response": r.response} for r in results], ensure_ascii=False
        )
        return [
            SystemMessage(SYNTHESIS_PROMPT),
            HumanMessage(f"User request: {message}\n\n{AGENT_RESULTS_HEADER}\n{merged}"),
        ]

    async def route_pipeline(
        self,
        agents: Sequence[str],
        message: str,
        context: Any,
        history: Sequence[HistoryMessage] = (),
    ) -> ChatResponse:
        """Agents in sequence, each seeing `previous_results`; then one synthesised answer."""
        results = await self._run_pipeline(agents, message, context, history)
        reply = await self.llm.invoke(self._synthesis_messages(message, results))
        return ChatResponse(
            response=message_text(reply.content),
            actions=[a for r in results for a in r.actions],
            agent=",".join(agents),
            demo=self.demo,
        )

    def _plan_for(self, request: ChatRequest, agents: list[str]) -> ExecutionPlan:
        for playbook, pattern in _PLAYBOOK_HINTS:
            if not request.agent and pattern.search(request.message):
                plan = self.plans.playbook_plan(playbook)
                self.tiers.require_agent(self.tier, plan.agent)
                return plan.model_copy(update={"demo": self.demo})
        return self.plans.agent_plan(agents).model_copy(update={"demo": self.demo})

    async def orchestrate(self, request: ChatRequest) -> ChatResponse | ExecutionPlan:
        if request.execution_mode == "plan":
            self.tiers.require_feature(self.tier, Feature.BATCH_BUILDER)
            return self._plan_for(request, await self._agents_for(request))
        agents = await self._agents_for(request)
        if len(agents) == 1:
            return await self.route_single(
                agents[0], request.message, request.context, request.history
            )
        return await self.route_pipeline(agents, request.message, request.context, request.history)

    async def orchestrate_stream(
        self, request: ChatRequest
    ) -> AsyncIterator[TokenFrame | DoneFrame]:
        """Token frames as the model produces text, then one done frame."""
        if request.execution_mode == "plan":
            plan = await self.orchestrate(request)
            assert isinstance(plan, ExecutionPlan)
            yield DoneFrame(
                done=True, response="", actions=[], agent=plan.agent, demo=self.demo, plan=plan
            )
            return
        if self.canned:
            # The answer may still be swapped for a canned one, so it is settled before
            # the first token goes out; the demo model has no latency to hide anyway.
            result = await self.orchestrate(request)
            assert isinstance(result, ChatResponse)
            for token in _TOKEN.findall(result.response):
                yield TokenFrame(token=token)
            yield DoneFrame(
                done=True,
                response=result.response,
                actions=result.actions,
                agent=result.agent,
                demo=result.demo,
            )
            return
        agents = await self._agents_for(request)
        actions = []
        if len(agents) == 1:
            events = self.registry.get(agents[0]).stream(
                request.message, request.context, llm=self.llm, history=request.history
            )
            text = ""
            async with aclosing(events) as stream:
                async for event in stream:
                    if isinstance(event, AgentResult):
                        text, actions = event.response, event.actions
                    else:
                        yield TokenFrame(token=event)
        else:
            results = await self._run_pipeline(
                agents, request.message, request.context, request.history
            )
            actions = [a for r in results for a in r.actions]
            parts: list[str] = []
            async with aclosing(
                self.llm.stream(self._synthesis_messages(request.message, results))
            ) as chunks:
                async for chunk in chunks:
                    token = message_text(chunk.content)
                    if token:
                        parts.append(token)
                        yield TokenFrame(token=token)
            text = "".join(parts)
        yield DoneFrame(
            done=True, response=text, actions=actions, agent=",".join(agents), demo=self.demo
        )
