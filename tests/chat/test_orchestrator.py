"""Intent routing, pipelines, plan mode with its tier gate, plans and the prompt fingerprints."""

from __future__ import annotations

import json

import pytest

from app.billing.tiers import TierTable
from app.chat.agents import registry
from app.chat.demo_model import DemoChatModel
from app.chat.llm import ModelCaller
from app.chat.orchestrator import Orchestrator
from app.chat.plans import ExecutionPlanBuilder, PlanCache, PlanService, PlanValidationError
from app.chat.prompts import AGENT_PROMPTS, TEMPLATES, prompt_fingerprints
from app.chat.schemas import ChatRequest, ChatResponse, ExecutionPlan
from app.chat.service import list_agent_infos
from app.config import Settings
from app.errors import Forbidden
from app.models import BillingTier
from tests.chat.test_agents import CONTEXT

TIERS = TierTable(Settings(_env_file=None))


def orchestrator(tier: BillingTier = BillingTier.PRO) -> Orchestrator:
    demo = ModelCaller(DemoChatModel(), None)
    return Orchestrator(
        llm=demo, router=demo, registry=registry, tiers=TIERS, tier=tier, plans=PlanService()
    )


@pytest.mark.parametrize(
    ("message", "agents"),
    [
        ("add a task to call Anna tomorrow, high priority", ["task_agent"]),
        ("show all my projects", ["project_agent"]),
        ("add a milestone Beta to the Website relaunch project", ["checkpoint_agent"]),
        ("write a note about the retro: ship smaller", ["note_agent"]),
        ("hello there", ["task_agent"]),
        ("move the release notes task to friday", ["task_agent"]),
        (
            "create a project Garden with tasks: dig, plant and water",
            ["project_agent", "task_agent"],
        ),
    ],
)
async def test_classify_intent(message, agents) -> None:
    assert await orchestrator().classify_intent(message) == agents


async def test_direct_mode_returns_chat_response_with_actions() -> None:
    result = await orchestrator().orchestrate(
        ChatRequest(message="add a task to call Anna tomorrow, high priority", context=CONTEXT)
    )
    assert isinstance(result, ChatResponse)
    assert result.agent == "task_agent" and not result.demo
    assert result.actions[0].type == "create_record"
    assert result.actions[0].data["title"] == "Call Anna"
    assert "Call Anna" in result.response


async def test_pipeline_passes_previous_results_and_synthesises() -> None:
    result = await orchestrator().orchestrate(
        ChatRequest(
            message="create a project Garden with tasks: dig, plant and water", context=CONTEXT
        )
    )
    assert result.agent == "project_agent,task_agent"
    project = result.actions[0]
    assert "description" not in project.data
    assert (project.type, project.table, project.data["name"]) == (
        "create_record",
        "projects",
        "Garden",
    )
    tasks = [a for a in result.actions if a.table == "tasks"]
    assert [t.data["title"] for t in tasks] == ["Dig", "Plant", "Water"]
    # The task agent saw the project the project agent created (previous_results).
    assert {t.data["project_id"] for t in tasks} == {project.id}
    assert "Garden" in result.response and "Dig" in result.response


async def test_free_tier_cannot_use_checkpoint_agent() -> None:
    with pytest.raises(Forbidden) as caught:
        await orchestrator(BillingTier.FREE).orchestrate(
            ChatRequest(message="list checkpoints", agent="checkpoint_agent")
        )
    assert caught.value.error == "agent_not_available"


async def test_plan_mode_needs_batch_builder() -> None:
    request = ChatRequest(message="add a task to call Anna", execution_mode="plan")
    for tier in (BillingTier.FREE, BillingTier.PRO):
        with pytest.raises(Forbidden) as caught:
            await orchestrator(tier).orchestrate(request)
        assert caught.value.error == "feature_not_available"
    plan = await orchestrator(BillingTier.POWER).orchestrate(request)
    assert isinstance(plan, ExecutionPlan)
    assert plan.agent == "task_agent"
    assert [s.template_id for s in plan.steps if s.kind == "llm"] == ["tpl_task_agent_default"]
    dumped = plan.model_dump_json()
    assert all(f not in dumped for f in prompt_fingerprints())
    assert "call Anna" not in dumped  # the request's words stay out of the cached skeleton


async def test_plan_mode_picks_a_playbook() -> None:
    plan = await orchestrator(BillingTier.TEAM).orchestrate(
        ChatRequest(message="generate my weekly summary note", execution_mode="plan")
    )
    assert plan.playbook == "generate_weekly_note"
    assert plan.steps[0].template_id == "tpl_note_weekly_summary"


def test_builder_validates_references() -> None:
    service = PlanService()
    builder = ExecutionPlanBuilder("task_agent", service.templates)
    with pytest.raises(PlanValidationError):
        builder.add_data_step("create_record", "step_9")
        builder.build()
    builder = ExecutionPlanBuilder("task_agent", service.templates)
    builder.add_llm_step("tpl_does_not_exist")
    with pytest.raises(PlanValidationError):
        builder.build()
    with pytest.raises(PlanValidationError):
        ExecutionPlanBuilder("task_agent", service.templates).build()
    assert set(service.templates.ids()) == {
        "tpl_task_agent_default",
        "tpl_checkpoint_agent_default",
        "tpl_project_agent_default",
        "tpl_note_agent_default",
        "tpl_task_extract_from_project",
        "tpl_note_weekly_summary",
    }
    assert [p.id for p in service.list_playbooks()] == [
        "create_tasks_from_project",
        "generate_weekly_note",
    ]


def test_plan_cache_is_lru_of_1000() -> None:
    service = PlanService()
    assert service.cache.maxsize == 1000
    cache = PlanCache(maxsize=3)
    plan = service.agent_plan(["task_agent"])
    for key in "abc":
        cache.put(key, plan)
    assert cache.get("a") is plan  # "a" is now the most recent
    cache.put("d", plan)
    assert "b" not in cache and "a" in cache and len(cache) == 3


def test_fingerprints_cover_prompts_and_metadata_never_shows_them() -> None:
    fingerprints = prompt_fingerprints()
    for text in [*AGENT_PROMPTS.values(), *TEMPLATES.values()]:
        assert any(f in text for f in fingerprints)
    metadata = json.dumps([a.model_dump() for a in list_agent_infos(TIERS)])
    assert not [f for f in fingerprints if f in metadata]
    for prompt in AGENT_PROMPTS.values():
        assert prompt not in metadata


@pytest.mark.parametrize("agent", ["task_agent", "project_agent", "checkpoint_agent", "note_agent"])
async def test_metadata_examples_run_on_an_empty_workspace(agent) -> None:
    orch = orchestrator()
    for example in registry.get(agent).examples:
        assert await orch.classify_intent(example) == [agent], example
        result = await orch.route_single(agent, example, None)
        assert result.response, example
    first = await orch.route_single(agent, registry.get(agent).examples[0], None)
    assert first.actions or agent == "checkpoint_agent"  # a checkpoint needs a project first
