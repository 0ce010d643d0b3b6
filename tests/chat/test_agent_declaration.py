"""One declaration per agent: a fifth agent is one class and one registration, and every
table keyed by agent name follows; inconsistent declarations stop the start-up."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, Field

from app.billing.tiers import TierTable
from app.chat import demo_intent
from app.chat.agents import AgentTool, ChatAgent, ToolOutcome, Workspace, registry
from app.chat.agents.base import new_id
from app.chat.agents.registry import AgentDeclarationError, AgentRegistry, playbook_template_refs
from app.chat.demo_model import DemoTurn, ToolCall
from app.chat.plans import PlanService
from app.chat.prompts import AGENT_PROMPTS, TEMPLATES
from app.chat.schemas import Action, ChatRequest
from app.config import Settings
from app.main import create_app
from app.models import BillingTier
from tests.support.builders import register, set_tier, tenant_id_of
from tests.support.settings import make_settings

CHAT = "/api/v1/chat"


# --- the fifth agent: everything it is, in one class --------------------------------------
class AddContactInput(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class NoInput(BaseModel):
    pass


def add_contact(ws: Workspace, args: AddContactInput) -> ToolOutcome:
    contact_id = new_id("contact")
    action = Action(type="create_record", table="contacts", id=contact_id, data=args.model_dump())
    return ToolOutcome(f"Added contact “{args.name}”.", {"id": contact_id}, [action])


def list_contacts(ws: Workspace, args: NoInput) -> ToolOutcome:
    names = [c.get("name", "") for c in ws.items("contacts")]
    return ToolOutcome(f"{len(names)} contact(s).", names)


class ContactAgent(ChatAgent):
    name = "contact_agent"
    title = "Contacts"
    description = "Adds and lists the people the user works with."
    examples = ("Add a contact Anna Berg", "Show my contacts")
    tags = ("contacts",)
    prompt = "You are Adiuva's contact agent, keeping the user's address book."
    table = "contacts"
    nouns = {"contacts": ("contact", "contacts", "kontakt", "kontakte")}
    templates = {
        "tpl_contact_agent_default": (
            "Adiuva plan template for contacts: from the user's request {message!r}, list "
            "the contacts to add."
        )
    }
    minimum_tier = BillingTier.PRO

    def get_tools(self) -> list[AgentTool]:
        return [
            AgentTool("add_contact", "Add a contact.", AddContactInput, add_contact),
            AgentTool("list_contacts", "List the contacts.", NoInput, list_contacts),
        ]

    def demo_plan(self, turn: DemoTurn) -> list[ToolCall] | None:
        named = re.search(r"\b(?:contact|kontakt)\s+(.+)$", turn.message, re.I)
        if named and re.match(r"(?:add|new|neuer)\b", turn.message, re.I):
            return [("add_contact", {"name": named.group(1).strip()})]
        return [("list_contacts", {})]


@pytest.fixture
def contact_agent() -> Iterator[type[ChatAgent]]:
    registry.register(ContactAgent)  # the one registration line
    try:
        yield ContactAgent
    finally:
        registry.unregister(ContactAgent.name)
    # Gone from every derived table: other tests see the four agents only.
    assert "contact_agent" not in registry and "contact_agent" not in demo_intent.AGENT_NOUNS
    assert "tpl_contact_agent_default" not in TEMPLATES
    assert demo_intent.classify("Add a contact Anna Berg") == ["task_agent"]


@pytest.fixture
def settings_overrides(contact_agent) -> dict[str, object]:
    # Registered before the app starts, as an agent module is imported before it.
    return {}


@pytest.mark.usefixtures("backend")
async def test_a_fifth_agent_is_routed_listed_gated_planned_and_demoed(client, app):
    # The offline model routes by the agent's own nouns, English and German.
    assert demo_intent.classify("Add a contact Anna Berg") == ["contact_agent"]
    assert demo_intent.classify("Neuer Kontakt Anna Berg") == ["contact_agent"]
    assert demo_intent.classify("Add a task to call Anna") == ["task_agent"]

    listed = {a["id"]: a for a in (await client.get("/api/v1/agents")).json()}
    contact = listed["contact_agent"]
    assert [t["name"] for t in contact["tools"]] == ["add_contact", "list_contacts"]
    assert contact["tiers"] == ["pro", "power", "team"]
    assert contact["examples"] == list(ContactAgent.examples)

    free = await register(client)
    refused = await client.post(
        CHAT, json={"message": "Add a contact Anna Berg"}, headers=free.headers
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "agent_not_available"
    assert "needs the pro tier" in refused.json()["message"]

    pro = await register(client)
    await set_tier(app, await tenant_id_of(client, pro), BillingTier.PRO)
    answer = await client.post(
        CHAT, json={"message": "Add a contact Anna Berg"}, headers=pro.headers
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["agent"] == "contact_agent"
    assert body["response"] == "Added contact “Anna Berg”."
    [action] = body["actions"]
    assert action["type"] == "create_record" and action["table"] == "contacts"
    assert action["data"] == {"name": "Anna Berg"}
    chosen = await client.post(
        CHAT, json={"message": "Show them", "agent": "contact_agent"}, headers=pro.headers
    )
    assert chosen.status_code == 200 and chosen.json()["response"] == "0 contact(s)."

    assert "tpl_contact_agent_default" in app.state.chat_plans.templates
    power = await register(client)
    await set_tier(app, await tenant_id_of(client, power), BillingTier.POWER)
    planned = await client.post(
        CHAT,
        json={"message": "Add a contact Anna Berg", "execution_mode": "plan"},
        headers=power.headers,
    )
    assert planned.status_code == 200, planned.text
    plan = planned.json()
    assert plan["agent"] == "contact_agent"
    llm, data = plan["steps"]
    assert llm["template_id"] == "tpl_contact_agent_default"
    assert data["vars"] == {"table": "contacts"}

    # Its prompt is the server's own text, like every agent's.
    assert AGENT_PROMPTS["contact_agent"].startswith("You are Adiuva's contact agent")
    assert (
        "contact_agent"
        in ChatRequest.model_json_schema()["properties"]["agent"]["anyOf"][0]["enum"]
    )


# --- the start-up check -------------------------------------------------------------------
class Broken(ContactAgent):
    name = "broken_agent"
    nouns = {"tasks": ("task",)}  # the task agent's noun
    templates = {"tpl_note_weekly_summary": "Adiuva plan template: a second one."}

    def get_tools(self) -> list[AgentTool]:
        return []


def test_the_check_names_every_problem_in_one_message() -> None:
    agents = AgentRegistry()
    for agent in registry.list_agents():
        agents.register(type(agent))
    agents.register(Broken)
    refs = [*playbook_template_refs(PlanService().list_playbooks())]
    refs.append(("playbook 'call_list'", "tpl_contact_call_list"))
    with pytest.raises(AgentDeclarationError) as raised:
        agents.check(refs)
    message = str(raised.value)
    assert "broken_agent has no tools" in message
    assert "broken_agent declares no template 'tpl_broken_agent_default'" in message
    assert "template 'tpl_note_weekly_summary' is declared by both note_agent and broken_agent" in (
        message
    )
    assert "noun 'task' routes to both task_agent and broken_agent" in message
    assert "playbook 'call_list' uses template 'tpl_contact_call_list'" in message
    assert message.count("The chat agents are declared inconsistently") == 1


def test_the_registered_agents_pass_the_check() -> None:
    registry.check(playbook_template_refs(PlanService().list_playbooks()))
    tiers = TierTable(Settings(_env_file=None))
    assert tiers[BillingTier.FREE].agents == {"task_agent", "project_agent", "note_agent"}
    assert tiers[BillingTier.PRO].agents == set(registry.names())


async def test_the_server_does_not_start_with_an_inconsistent_agent(tmp_path) -> None:
    registry.register(Broken)
    try:
        app = create_app(make_settings("sqlite+aiosqlite://", tmp_path / "data"))
        with pytest.raises(AgentDeclarationError, match="broken_agent has no tools"):
            async with app.router.lifespan_context(app):
                pass
    finally:
        registry.unregister(Broken.name)
    assert "broken_agent" not in registry
