"""Applying agent actions to a workspace copy: validated, never mutating the input."""

from __future__ import annotations

import copy
from datetime import date

import pytest

from app.chat.schemas import Action
from app.demo.templates import load_templates
from app.demo.workspace import ActionError, apply_actions


@pytest.fixture(scope="module")
def workspace() -> dict:
    return load_templates().get("product_team").materialize(date(2026, 3, 10))


def act(type_: str, table: str, id: str | None = None, **data) -> Action:
    """An action as a chat answer carries it: the record's id beside its fields."""
    return Action(type=type_, table=table, id=id, data=data)


def test_the_input_is_never_mutated(workspace):
    before = copy.deepcopy(workspace)
    apply_actions(workspace, [act("delete_record", "tasks", id="task_team_retro")])
    apply_actions(workspace, [act("update_record", "notes", id="note_standup", title="x")])
    assert workspace == before


def test_create_fills_defaults_and_an_id(workspace):
    result = apply_actions(workspace, [act("create_record", "tasks", title="Call Anna")])
    task = result["tasks"][-1]
    assert task["id"].startswith("task_")
    assert task["status"] == "todo" and task["priority"] == "medium"
    assert task["comments"] == []


def test_comments_are_added_and_deleted_on_their_task(workspace):
    added = apply_actions(
        workspace, [act("create_record", "comments", task_id="task_pay_webhooks", body="ok")]
    )
    task = next(t for t in added["tasks"] if t["id"] == "task_pay_webhooks")
    comment = task["comments"][-1]
    assert comment["body"] == "ok" and comment["author"] == "Priya Raman"
    removed = apply_actions(added, [act("delete_record", "comments", id=comment["id"])])
    task = next(t for t in removed["tasks"] if t["id"] == "task_pay_webhooks")
    assert task["comments"] == []


@pytest.mark.parametrize(
    ("action", "status"),
    [
        (act("update_record", "tasks", id="task_nope", title="x"), 404),
        (act("delete_record", "notes", id="note_nope"), 404),
        (act("update_record", "tasks", title="no id"), 422),
        (act("update_record", "tasks", id="task_team_retro", priority="urgent"), 422),
        (act("create_record", "checkpoints", title="needs a project"), 422),
        (act("create_record", "tasks", id="task_team_retro", title="duplicate id"), 422),
        (act("create_record", "notes", title="t", project_id="project_nope"), 422),
        (act("create_record", "comments", task_id="task_nope", body="x"), 404),
        (act("update_record", "comments", id="comment_v2_crash_1", body="x"), 422),
        (act("create_record", "contacts", name="Anna"), 422),
        (Action(type="update_record", table="tasks", data={"id": "task_team_retro"}), 422),
    ],
)
def test_invalid_actions_are_refused(workspace, action, status):
    with pytest.raises(ActionError) as raised:
        apply_actions(workspace, [action])
    assert raised.value.status == status
