"""Executing one plan's steps: llm steps through an agent, data steps into action descriptors.

An llm step renders its template on the server (the text never leaves it) and gives
it to the step's agent as the step's instruction, after the agent's own prompt; the
user's words for the run (`message`), or else the instruction itself, are the human
turn. The agent's tool loop proposes actions, as in chat. A data step turns an
earlier step's proposals into the run's action descriptors: `create_record` (the
records it creates in the step's table), `apply_actions` (every change it proposes
for the table), `index_document` (an index action per record it wrote), or any
other action type (its actions of that type).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import aclosing
from typing import Any

from langchain_core.messages import SystemMessage

from app.chat.agents import AgentRegistry, AgentResult, Workspace
from app.chat.llm import ModelCaller
from app.chat.plans import PromptTemplateRegistry, resolve_vars
from app.chat.schemas import Action, ExecutionPlan, PlanStep
from app.plans.schemas import StepOutput

STEP_HEADER = "Plan step instruction (from the server's plan):"


class PlanExecution:
    """The state one run carries from step to step: the workspace and the outputs."""

    def __init__(
        self,
        plan: ExecutionPlan,
        *,
        templates: PromptTemplateRegistry,
        registry: AgentRegistry,
        llm: ModelCaller,
        inputs: Mapping[str, Any],
        workspace: Workspace,
    ) -> None:
        self.plan = plan
        self.templates = templates
        self.registry = registry
        self.llm = llm
        self.inputs = dict(inputs)
        self.workspace = workspace
        self.outputs: dict[str, StepOutput] = {}
        self._results: dict[str, AgentResult] = {}

    async def run_step(self, step: PlanStep) -> StepOutput:
        output = await (self._llm_step(step) if step.kind == "llm" else self._data_step(step))
        self.outputs[step.id] = output
        return output

    async def _llm_step(self, step: PlanStep) -> StepOutput:
        assert step.template_id is not None and step.agent is not None
        instruction = self.templates.render(
            step.template_id, **resolve_vars(step.vars, self.inputs)
        )
        agent = self.registry.get(step.agent)
        previous = [self._results[ref] for ref in step.depends_on if ref in self._results]
        human = self.inputs.get("message") or instruction
        messages = agent.build_messages(human, self.workspace, previous)
        system = messages[0]
        messages[0] = SystemMessage(f"{system.content}\n\n{STEP_HEADER}\n{instruction}")
        result: AgentResult | None = None
        async with aclosing(agent._tool_loop(self.llm, messages, self.workspace)) as events:
            async for event in events:
                if isinstance(event, AgentResult):
                    result = event
        assert result is not None
        self._results[step.id] = result
        return StepOutput(text=result.response, actions=list(result.actions))

    async def _data_step(self, step: PlanStep) -> StepOutput:
        source = self.outputs[step.data_from_step or ""]
        table = step.vars.get("table")
        mine = [a for a in source.actions if table is None or a.table == table]
        if step.action == "apply_actions":
            actions = mine
        elif step.action == "index_document":
            indexed = {a.id for a in mine if a.type == "index_document"}
            actions = [
                Action(type="index_document", table=a.table, id=a.id)
                for a in mine
                if a.type in ("create_record", "update_record") and a.id not in indexed
            ] + [a for a in mine if a.type == "index_document"]
        else:
            actions = [a for a in mine if a.type == step.action]
        return StepOutput(actions=[a.model_copy(deep=True) for a in actions])


def run_actions(plan: ExecutionPlan, outputs: Mapping[str, StepOutput]) -> list[Action]:
    """The run's action descriptors: its data steps', each change once."""
    seen: set[tuple[str, str | None, str | None]] = set()
    actions: list[Action] = []
    for step in plan.steps:
        if step.kind != "data" or step.id not in outputs:
            continue
        for action in outputs[step.id].actions:
            key = (action.type, action.table, action.id)
            if key not in seen:
                seen.add(key)
                actions.append(action)
    return actions
