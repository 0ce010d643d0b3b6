"""The four agents: exact tools, JSON schemas, action descriptors, the tool loop, the demo model."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from langchain_core.messages import AIMessage

from app.chat.agents import Workspace, registry
from app.chat.demo_model import DemoChatModel
from app.chat.llm import ModelCaller
from app.chat.schemas import ChatContext

TODAY = dt.date(2026, 11, 18)  # a Wednesday

CONTEXT = ChatContext.model_validate(
    {
        "today": TODAY.isoformat(),
        "projects": [
            {"id": "p1", "name": "Website relaunch", "status": "active"},
            {"id": "p2", "name": "Old shop", "status": "archived"},
        ],
        "tasks": [
            {
                "id": "t1",
                "title": "Write website copy",
                "priority": "high",
                "due_date": TODAY.isoformat(),
                "project_id": "p1",
            },
            {"id": "t2", "title": "Call the printer", "status": "done", "priority": "low"},
        ],
        "checkpoints": [{"id": "c1", "title": "Beta release", "project_id": "p1"}],
        "notes": [{"id": "n1", "title": "Kickoff", "body": "We start in May."}],
        "comments": [{"id": "m1", "task_id": "t1", "body": "Draft is in the drive"}],
    }
)

EXPECTED_TOOLS = {
    "task_agent": [
        "list_tasks",
        "create_task",
        "update_task",
        "delete_task",
        "list_tasks_due_today",
        "list_task_comments",
        "add_task_comment",
        "delete_task_comment",
    ],
    "project_agent": [
        "list_projects",
        "list_all_projects",
        "get_project",
        "create_project",
        "update_project",
        "delete_project",
    ],
    "checkpoint_agent": [
        "list_checkpoints",
        "create_checkpoint",
        "update_checkpoint",
        "delete_checkpoint",
    ],
    "note_agent": ["list_notes", "get_note", "create_note", "update_note", "delete_note"],
}

# (agent, tool, arguments, expected action types, expected table)
TOOL_CASES = [
    ("task_agent", "list_tasks", {"priority": "high"}, [], None),
    (
        "task_agent",
        "create_task",
        {"title": "Call Anna", "due_date": "2026-11-19", "remind": True},
        ["create_record", "send_notification"],
        "tasks",
    ),
    ("task_agent", "update_task", {"task_id": "t1", "status": "done"}, ["update_record"], "tasks"),
    ("task_agent", "delete_task", {"task_id": "t1"}, ["delete_record", "delete_record"], "tasks"),
    ("task_agent", "list_tasks_due_today", {}, [], None),
    ("task_agent", "list_task_comments", {"task_id": "t1"}, [], None),
    (
        "task_agent",
        "add_task_comment",
        {"task_id": "t1", "body": "ok"},
        ["create_record"],
        "comments",
    ),
    ("task_agent", "delete_task_comment", {"comment_id": "m1"}, ["delete_record"], "comments"),
    ("project_agent", "list_projects", {}, [], None),
    ("project_agent", "list_all_projects", {}, [], None),
    ("project_agent", "get_project", {"project_id": "p1"}, [], None),
    ("project_agent", "create_project", {"name": "Garden"}, ["create_record"], "projects"),
    (
        "project_agent",
        "update_project",
        {"project_id": "p2", "status": "active"},
        ["update_record"],
        "projects",
    ),
    ("project_agent", "delete_project", {"project_id": "p1"}, ["update_record"], "projects"),
    ("checkpoint_agent", "list_checkpoints", {"project_id": "p1"}, [], None),
    (
        "checkpoint_agent",
        "create_checkpoint",
        {"project_id": "p1", "title": "Launch"},
        ["create_record"],
        "checkpoints",
    ),
    (
        "checkpoint_agent",
        "update_checkpoint",
        {"checkpoint_id": "c1", "status": "reached"},
        ["update_record"],
        "checkpoints",
    ),
    (
        "checkpoint_agent",
        "delete_checkpoint",
        {"checkpoint_id": "c1"},
        ["delete_record"],
        "checkpoints",
    ),
    ("note_agent", "list_notes", {"query": "kickoff"}, [], None),
    ("note_agent", "get_note", {"note_id": "n1"}, [], None),
    (
        "note_agent",
        "create_note",
        {"title": "Ideas", "body": "- more tests"},
        ["create_record", "index_document"],
        "notes",
    ),
    (
        "note_agent",
        "update_note",
        {"note_id": "n1", "append": "Moved to June."},
        ["update_record", "index_document"],
        "notes",
    ),
    ("note_agent", "delete_note", {"note_id": "n1"}, ["delete_record"], "notes"),
]


def _tool(agent: str, name: str):
    return next(t for t in registry.get(agent).get_tools() if t.name == name)


def test_registry_has_the_four_agents_with_exact_tools() -> None:
    assert registry.names() == list(EXPECTED_TOOLS) or set(registry.names()) == set(EXPECTED_TOOLS)
    for agent, tools in EXPECTED_TOOLS.items():
        assert [t.name for t in registry.get(agent).get_tools()] == tools


def test_every_tool_has_a_json_object_schema() -> None:
    for agent in EXPECTED_TOOLS:
        for tool in registry.get(agent).get_tools():
            schema = tool.openai_schema()
            assert schema["function"]["name"] == tool.name
            assert schema["function"]["parameters"]["type"] == "object"
            json.dumps(schema)
    create = _tool("checkpoint_agent", "create_checkpoint").input_schema()
    assert "project_id" in create["required"]


@pytest.mark.parametrize(("agent", "name", "args", "types", "table"), TOOL_CASES)
def test_tool_returns_action_descriptors(agent, name, args, types, table) -> None:
    outcome = _tool(agent, name)(Workspace(CONTEXT), args)
    assert outcome.ok, outcome.summary
    assert [a.type for a in outcome.actions] == types
    if table:
        assert outcome.actions[0].table == table
    for action in outcome.actions:
        if action.type == "create_record":
            # The ids clients (and demo workspaces) accept: lowercase identifiers.
            assert re.fullmatch(r"[a-z][a-z0-9_]{1,63}", action.id)
    json.loads(outcome.to_message())


def test_tools_refuse_unknown_ids_and_bad_arguments() -> None:
    ws = Workspace(CONTEXT)
    assert not _tool("task_agent", "update_task")(ws, {"task_id": "nope", "status": "done"}).ok
    bad = _tool("task_agent", "create_task")(ws, {"title": "x", "priority": "urgent"})
    assert not bad.ok and "priority" in bad.summary
    missing = _tool("checkpoint_agent", "create_checkpoint")(ws, {"title": "No project"})
    assert not missing.ok and "project_id" in missing.summary


def test_delete_project_archives_unless_permanent() -> None:
    ws = Workspace(CONTEXT)
    archived = _tool("project_agent", "delete_project")(ws, {"project_id": "p1"})
    assert archived.actions[0].data == {"status": "archived"}
    gone = _tool("project_agent", "delete_project")(ws, {"project_id": "p1", "permanent": True})
    assert gone.actions[0].type == "delete_record"


async def test_demo_model_emits_real_tool_call_with_parsed_arguments() -> None:
    llm = ModelCaller(DemoChatModel(), None)
    agent = registry.get("task_agent")
    messages = agent.build_messages(
        "add a task to call Anna tomorrow, high priority", Workspace(CONTEXT)
    )
    reply = await llm.invoke(messages, [t.openai_schema() for t in agent.get_tools()])
    assert reply.tool_calls[0]["name"] == "create_task"
    assert reply.tool_calls[0]["args"] == {
        "title": "Call Anna",
        "priority": "high",
        "due_date": "2026-11-19",
    }


@pytest.mark.parametrize(
    ("agent", "message", "tool", "expected"),
    [
        (
            "task_agent",
            "Mark the website copy task as done",
            "update_task",
            {"task_id": "t1", "status": "done"},
        ),
        ("task_agent", "What is due today?", "list_tasks_due_today", {"include_overdue": True}),
        (
            "task_agent",
            "Comment on the website copy task: looks good",
            "add_task_comment",
            {"task_id": "t1", "body": "looks good"},
        ),
        (
            "project_agent",
            "Archive the Website relaunch project",
            "delete_project",
            {"project_id": "p1", "permanent": False},
        ),
        ("project_agent", "Create a project called Garden", "create_project", {"name": "Garden"}),
        (
            "checkpoint_agent",
            "Add a milestone Launch party to the Website relaunch project on friday",
            "create_checkpoint",
            {"project_id": "p1", "title": "Launch party", "due_date": "2026-11-20"},
        ),
        (
            "note_agent",
            "Write a note about the retro: ship smaller",
            "create_note",
            {"title": "Retro", "body": "ship smaller"},
        ),
        ("note_agent", "Delete the kickoff note", "delete_note", {"note_id": "n1"}),
        (
            "checkpoint_agent",
            "Approve the Beta release checkpoint, it was reached",
            "update_checkpoint",
            {"checkpoint_id": "c1", "approved": True, "status": "reached"},
        ),
    ],
)
async def test_demo_agents_act_on_the_context(agent, message, tool, expected) -> None:
    llm = ModelCaller(DemoChatModel(), None)
    a = registry.get(agent)
    reply = await llm.invoke(
        a.build_messages(message, Workspace(CONTEXT)), [t.openai_schema() for t in a.get_tools()]
    )
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [(tool, expected)]
    result = await a.handle(message, CONTEXT, llm=llm)
    assert result.actions or tool.startswith(("list", "get"))
    assert result.response


async def test_demo_model_streams_token_by_token() -> None:
    tokens = []
    result = None
    async for event in registry.get("task_agent").stream(
        "add a task to call Bob", CONTEXT, llm=ModelCaller(DemoChatModel(), None)
    ):
        if isinstance(event, str):
            tokens.append(event)
        else:
            result = event
    assert len(tokens) > 3 and "".join(tokens) == result.response
    assert result.actions[0].data["title"] == "Call Bob"


class _AlwaysCallsTools(DemoChatModel):
    def respond(self, messages, tools):
        return AIMessage(
            content="",
            tool_calls=[
                {"name": "list_tasks", "args": {}, "id": f"c{len(messages)}", "type": "tool_call"}
            ],
        )


async def test_tool_loop_stops_after_five_rounds() -> None:
    result = await registry.get("task_agent").handle(
        "loop forever", CONTEXT, llm=ModelCaller(_AlwaysCallsTools(), None)
    )
    assert result.tool_calls == 5
    assert result.response


def test_comments_kept_inside_tasks_are_found() -> None:
    context = ChatContext.model_validate(
        {"tasks": [{"id": "t9", "title": "Ship", "comments": [{"id": "m9", "body": "soon"}]}]}
    )
    outcome = _tool("task_agent", "list_task_comments")(Workspace(context), {"task_id": "t9"})
    assert outcome.data == [{"id": "m9", "body": "soon", "task_id": "t9"}]
