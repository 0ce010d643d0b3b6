"""Execution plans: server-side templates, a validating builder, the plan cache, playbooks.

A plan names template ids only; the prompt text behind an id never leaves the
server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections import OrderedDict
from threading import Lock
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, create_model

from app.chat.prompts import AGENT_TABLES, TEMPLATES
from app.chat.schemas import ExecutionPlan, PlanStep, Playbook
from app.errors import NotFound


class PlanValidationError(ValueError):
    """A step refers to a template or step that does not exist."""


INPUT_PREFIX = "$input."
# The inputs a plan's steps may refer to, and what a run accepts for each. `message` (the
# user's words for the run) is optional for every plan that does not require it.
_Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
_Text = Annotated[str, StringConstraints(min_length=1, max_length=8000)]
INPUT_TYPES: dict[str, Any] = {
    "message": _Text,
    "project_id": _Id,
    "week_start": dt.date,
}
_OTHER_INPUT = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
DATA_ACTIONS = frozenset(
    {"create_record", "update_record", "delete_record", "index_document", "apply_actions"}
)


def input_names(plan: ExecutionPlan) -> list[str]:
    """The `$input.…` names a plan's steps refer to, in order of first use."""
    names: list[str] = []
    for step in plan.steps:
        for value in step.vars.values():
            if isinstance(value, str) and value.startswith(INPUT_PREFIX):
                name = value[len(INPUT_PREFIX) :]
                if name not in names:
                    names.append(name)
    return names


def inputs_model(plan: ExecutionPlan) -> type[BaseModel]:
    """A model of the inputs a run of `plan` takes: every referenced name is required."""
    required = input_names(plan)
    fields: dict[str, Any] = {name: (INPUT_TYPES.get(name, _OTHER_INPUT), ...) for name in required}
    if "message" not in fields:
        fields["message"] = (_Text | None, None)
    return create_model("PlanInputs", __config__=ConfigDict(extra="forbid"), **fields)


def resolve_vars(variables: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """A step's variables with each `$input.…` reference replaced by the run's input."""
    resolved: dict[str, Any] = {}
    for key, value in variables.items():
        if isinstance(value, str) and value.startswith(INPUT_PREFIX):
            value = inputs.get(value[len(INPUT_PREFIX) :])
            if isinstance(value, dt.date):
                value = value.isoformat()
        resolved[key] = value
    return resolved


def validate_plan(plan: ExecutionPlan, templates: PromptTemplateRegistry) -> None:
    """A plan as `build()` validates it, and data steps that name an action runs know."""
    builder = ExecutionPlanBuilder(plan.agent, templates)
    for step in plan.steps:
        if step.kind == "data" and step.action not in DATA_ACTIONS:
            raise PlanValidationError(f"step {step.id!r}: unknown action {step.action!r}")
        if step.kind == "agent":
            raise PlanValidationError(f"step {step.id!r}: agent steps do not run on the server")
        if step.kind == "llm" and not step.agent:
            raise PlanValidationError(f"step {step.id!r}: an llm step names its agent")
        builder.add_step(step)
    builder.build()


class PromptTemplateRegistry:
    def __init__(self, templates: dict[str, str] | None = None) -> None:
        self._templates = dict(TEMPLATES if templates is None else templates)

    def __contains__(self, template_id: object) -> bool:
        return template_id in self._templates

    def ids(self) -> list[str]:
        return sorted(self._templates)

    def render(self, template_id: str, **variables: Any) -> str:
        """The prompt text, for server-side execution only."""
        try:
            template = self._templates[template_id]
        except KeyError:
            raise PlanValidationError(f"unknown template {template_id!r}") from None
        return template.format(**variables)


class ExecutionPlanBuilder:
    """Steps in order; `build()` checks templates and references to earlier steps."""

    def __init__(self, agent: str, templates: PromptTemplateRegistry) -> None:
        self.agent = agent
        self.templates = templates
        self._steps: list[PlanStep] = []

    def _next_id(self) -> str:
        return f"step_{len(self._steps) + 1}"

    def add_step(self, step: PlanStep) -> str:
        self._steps.append(step)
        return step.id

    def add_llm_step(
        self,
        template_id: str,
        vars: dict[str, Any] | None = None,
        *,
        depends_on: list[str] | None = None,
        agent: str | None = None,
    ) -> str:
        return self.add_step(
            PlanStep(
                id=self._next_id(),
                kind="llm",
                template_id=template_id,
                agent=agent or self.agent,
                vars=dict(vars or {}),
                depends_on=list(depends_on or []),
            )
        )

    def add_data_step(self, action: str, data_from_step: str, *, table: str | None = None) -> str:
        return self.add_step(
            PlanStep(
                id=self._next_id(),
                kind="data",
                action=action,
                vars={"table": table} if table else {},
                data_from_step=data_from_step,
                depends_on=[data_from_step],
            )
        )

    def build(self, *, playbook: str | None = None) -> ExecutionPlan:
        seen: set[str] = set()
        for step in self._steps:
            if step.id in seen:
                raise PlanValidationError(f"duplicate step id {step.id!r}")
            if step.kind == "llm" and step.template_id not in self.templates:
                raise PlanValidationError(
                    f"step {step.id!r}: unknown template {step.template_id!r}"
                )
            refs = [*step.depends_on, *([step.data_from_step] if step.data_from_step else [])]
            for ref in refs:
                if ref not in seen:
                    raise PlanValidationError(
                        f"step {step.id!r} refers to {ref!r}, which is not an earlier step"
                    )
            seen.add(step.id)
        if not self._steps:
            raise PlanValidationError("a plan needs at least one step")
        return ExecutionPlan(
            plan_id=uuid.uuid4().hex, agent=self.agent, steps=list(self._steps), playbook=playbook
        )


class PlanCache:
    """LRU of plan skeletons by signature, so equal requests reuse one validated plan."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._plans: OrderedDict[str, ExecutionPlan] = OrderedDict()
        self._lock = Lock()

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str) -> ExecutionPlan | None:
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
            return plan

    def put(self, key: str, plan: ExecutionPlan) -> None:
        with self._lock:
            self._plans[key] = plan
            self._plans.move_to_end(key)
            while len(self._plans) > self.maxsize:
                self._plans.popitem(last=False)

    def __len__(self) -> int:
        return len(self._plans)

    def __contains__(self, key: object) -> bool:
        return key in self._plans


def _create_tasks_from_project(templates: PromptTemplateRegistry) -> Playbook:
    builder = ExecutionPlanBuilder("task_agent", templates)
    extract = builder.add_llm_step(
        "tpl_task_extract_from_project", {"project_id": "$input.project_id"}
    )
    builder.add_data_step("create_record", extract, table="tasks")
    plan = builder.build(playbook="create_tasks_from_project")
    return Playbook(
        id="create_tasks_from_project",
        name="Create tasks from a project",
        description=(
            "Extracts the actionable tasks from a project and its notes, then creates them."
        ),
        steps=plan.steps,
    )


def _generate_weekly_note(templates: PromptTemplateRegistry) -> Playbook:
    builder = ExecutionPlanBuilder("note_agent", templates)
    summary = builder.add_llm_step("tpl_note_weekly_summary", {"week_start": "$input.week_start"})
    builder.add_data_step("create_record", summary, table="notes")
    builder.add_data_step("index_document", summary, table="notes")
    plan = builder.build(playbook="generate_weekly_note")
    return Playbook(
        id="generate_weekly_note",
        name="Generate the weekly note",
        description=(
            "Summarises the week's tasks into a Markdown note, then creates and indexes it."
        ),
        steps=plan.steps,
    )


class PlanService:
    """Templates, the two playbooks and the plan cache of one application."""

    def __init__(self, cache_size: int = 1000) -> None:
        self.templates = PromptTemplateRegistry()
        self.cache = PlanCache(cache_size)
        self.playbooks: dict[str, Playbook] = {
            p.id: p
            for p in (
                _create_tasks_from_project(self.templates),
                _generate_weekly_note(self.templates),
            )
        }

    def list_playbooks(self) -> list[Playbook]:
        return list(self.playbooks.values())

    def get_playbook(self, playbook_id: str) -> Playbook:
        try:
            return self.playbooks[playbook_id]
        except KeyError:
            raise NotFound(
                f"No playbook named {playbook_id!r}.", error="playbook_not_found"
            ) from None

    def playbook_plan(self, playbook_id: str) -> ExecutionPlan:
        playbook = self.get_playbook(playbook_id)
        agent = next((s.agent for s in playbook.steps if s.agent), "task_agent")
        steps = [step.model_copy(deep=True) for step in playbook.steps]
        return ExecutionPlan(
            plan_id=uuid.uuid4().hex, agent=agent, steps=steps, playbook=playbook.id
        )

    def agent_plan(self, agents: list[str]) -> ExecutionPlan:
        """The default plan for these agents: each one's template, then applying its result.

        The request's own words stay out of the plan (and out of the shared cache): an
        llm step reads them from `$input.message` when the plan runs.
        """
        key = PlanCache.key("agents", agents)
        cached = self.cache.get(key)
        if cached is None:
            builder = ExecutionPlanBuilder(agents[0], self.templates)
            previous: str | None = None
            for agent in agents:
                draft = builder.add_llm_step(
                    f"tpl_{agent}_default",
                    {"message": "$input.message"},
                    depends_on=[previous] if previous else None,
                    agent=agent,
                )
                previous = builder.add_data_step("apply_actions", draft, table=AGENT_TABLES[agent])
            cached = builder.build()
            self.cache.put(key, cached)
        return cached.model_copy(update={"plan_id": uuid.uuid4().hex}, deep=True)
