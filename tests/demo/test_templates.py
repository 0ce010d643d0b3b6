"""Template workspaces: loaded and validated once, materialized fresh for every session."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from app.demo.templates import TEMPLATES_DIR, TemplateError, load_templates
from app.demo.workspace import Workspace

TODAY = date(2026, 3, 10)


def test_bundled_templates_load_and_are_realistic():
    catalog = load_templates()
    assert {"freelancer", "product_team"} <= set(catalog.account_types)
    for template in catalog:
        workspace = Workspace.model_validate(template.materialize(TODAY))
        assert len(workspace.projects) >= 3
        assert len(workspace.tasks) >= 10
        assert {t.status for t in workspace.tasks} == {"todo", "in_progress", "done"}
        assert {t.priority for t in workspace.tasks} == {"high", "medium", "low"}
        assert any(t.comments for t in workspace.tasks)
        assert any(t.due_date == TODAY for t in workspace.tasks), "something is due today"
        assert all(c.project_id for c in workspace.checkpoints)
        assert workspace.notes


def test_relative_dates_are_fixed_against_the_session_day():
    template = load_templates().get("freelancer")
    today = template.materialize(TODAY)
    tomorrow = template.materialize(TODAY + timedelta(days=1))
    first = {t["id"]: t["due_date"] for t in today["tasks"]}
    second = {t["id"]: t["due_date"] for t in tomorrow["tasks"]}
    for task_id, due in first.items():
        if due is not None:
            assert date.fromisoformat(second[task_id]) - date.fromisoformat(due) == timedelta(1)


def test_materialize_hands_out_independent_copies():
    template = load_templates().get("product_team")
    one = template.materialize(TODAY)
    one["tasks"][0]["title"] = "changed"
    one["tasks"][0]["comments"].clear()
    one["projects"].clear()
    two = template.materialize(TODAY)
    assert two["tasks"][0]["title"] != "changed"
    assert two["tasks"][0]["comments"]
    assert two["projects"]


def _write(directory: Path, name: str, data: dict | str) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    (directory / f"{name}.json").write_text(text, encoding="utf-8")


def _valid() -> dict:
    return json.loads((TEMPLATES_DIR / "freelancer.json").read_text(encoding="utf-8"))


def _unknown_project(data: dict) -> None:
    data["tasks"][0]["project_id"] = "project_nope"


def _checkpoint_without_project(data: dict) -> None:
    del data["checkpoints"][0]["project_id"]


def _duplicate_id(data: dict) -> None:
    data["notes"][0]["id"] = data["tasks"][0]["id"]


def _bad_status(data: dict) -> None:
    data["tasks"][0]["status"] = "blocked"


def _bad_priority(data: dict) -> None:
    data["tasks"][0]["priority"] = "urgent"


def _unexpected_field(data: dict) -> None:
    data["projects"][0]["owner"] = "someone"


def _duplicate_comment_id(data: dict) -> None:
    task = next(t for t in data["tasks"] if t.get("comments"))
    task["comments"].append(dict(task["comments"][0]))


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (_unknown_project, "unknown project 'project_nope'"),
        (_checkpoint_without_project, "project_id"),
        (_duplicate_id, "duplicate id"),
        (_duplicate_comment_id, "duplicate id"),
        (_bad_status, "status"),
        (_bad_priority, "priority"),
        (_unexpected_field, "owner"),
    ],
)
def test_a_bad_template_fails_loudly_naming_the_file(tmp_path, breaks, message):
    data = _valid()
    breaks(data)
    _write(tmp_path, "freelancer", data)
    with pytest.raises(TemplateError) as raised:
        load_templates(tmp_path)
    assert "freelancer.json" in str(raised.value)
    assert message in str(raised.value)


def test_unreadable_json_and_misnamed_files_are_refused(tmp_path):
    _write(tmp_path, "freelancer", "{not json")
    with pytest.raises(TemplateError, match="cannot read"):
        load_templates(tmp_path)
    (tmp_path / "freelancer.json").unlink()
    _write(tmp_path, "someone_else", _valid())
    with pytest.raises(TemplateError, match="must match the file name"):
        load_templates(tmp_path)


def test_an_empty_template_directory_is_an_error(tmp_path):
    with pytest.raises(TemplateError, match="no demo templates"):
        load_templates(tmp_path)
