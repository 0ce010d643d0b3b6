"""Template workspaces: our sample data, kept as JSON files beside this module.

Dates in a template are relative (`due_in_days`, `days_ago`), so a session
created on any day sees a live workspace: something due today, something
overdue, something next week. `TemplateCatalog.materialize` turns a template
into a fresh `Workspace` dict for one session; the loaded templates are never
handed out, so nothing a session does can reach them.

A bad file fails loudly at start-up (`TemplateError` naming the file and the
problem): wrong fields, duplicate ids, a task or checkpoint pointing at a
project that does not exist.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.demo.workspace import (
    CheckpointStatus,
    PersonaProfile,
    Priority,
    ProjectStatus,
    TaskStatus,
    Workspace,
    WorkspaceSummary,
    check_references,
    summarize,
)

TEMPLATES_DIR = Path(__file__).parent / "templates"

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")]


class TemplateError(Exception):
    """A template file is missing, unreadable or invalid."""


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateComment(_FileModel):
    id: Identifier
    author: str = Field(min_length=1)
    body: str = Field(min_length=1)
    days_ago: int = Field(ge=0)


class TemplateProject(_FileModel):
    id: Identifier
    name: str = Field(min_length=1)
    description: str
    status: ProjectStatus = "active"
    due_in_days: int | None = None


class TemplateTask(_FileModel):
    id: Identifier
    project_id: str | None
    title: str = Field(min_length=1)
    description: str = ""
    status: TaskStatus
    priority: Priority
    due_in_days: int | None = None
    assignee: str | None = None
    tags: tuple[str, ...] = ()
    comments: tuple[TemplateComment, ...] = ()


class TemplateCheckpoint(_FileModel):
    id: Identifier
    project_id: str
    title: str = Field(min_length=1)
    description: str = ""
    due_in_days: int
    status: CheckpointStatus = "pending"
    ai_suggested: bool = False
    approved: bool = True


class TemplateNote(_FileModel):
    id: Identifier
    project_id: str | None = None
    title: str = Field(min_length=1)
    body: str = Field(min_length=1)
    tags: tuple[str, ...] = ()
    updated_days_ago: int = Field(ge=0)


class WorkspaceTemplate(_FileModel):
    account_type: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    user_profile: PersonaProfile
    projects: tuple[TemplateProject, ...] = Field(min_length=1)
    tasks: tuple[TemplateTask, ...] = Field(min_length=1)
    checkpoints: tuple[TemplateCheckpoint, ...] = Field(min_length=1)
    notes: tuple[TemplateNote, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> WorkspaceTemplate:
        check_references(self.projects, self.tasks, self.checkpoints, self.notes)
        return self

    def materialize(self, today: date) -> dict[str, Any]:
        """A new workspace (JSON form) with the relative dates fixed against `today`."""

        def due(days: int | None) -> str | None:
            return None if days is None else (today + timedelta(days=days)).isoformat()

        def past(days: int) -> str:
            # Mid-morning UTC, so "n days ago" reads the same in every timezone's calendar.
            moment = datetime.combine(today - timedelta(days=days), time(9, 30), tzinfo=UTC)
            return moment.isoformat()

        workspace = {
            "account_type": self.account_type,
            "name": self.name,
            "user_profile": self.user_profile.model_dump(mode="json"),
            "projects": [
                {**p.model_dump(exclude={"due_in_days"}), "due_date": due(p.due_in_days)}
                for p in self.projects
            ],
            "tasks": [
                {
                    **t.model_dump(exclude={"due_in_days", "comments", "tags"}),
                    "due_date": due(t.due_in_days),
                    "tags": list(t.tags),
                    "comments": [
                        {**c.model_dump(exclude={"days_ago"}), "created_at": past(c.days_ago)}
                        for c in t.comments
                    ],
                }
                for t in self.tasks
            ],
            "checkpoints": [
                {**c.model_dump(exclude={"due_in_days"}), "due_date": due(c.due_in_days)}
                for c in self.checkpoints
            ],
            "notes": [
                {
                    **n.model_dump(exclude={"updated_days_ago", "tags"}),
                    "tags": list(n.tags),
                    "updated_at": past(n.updated_days_ago),
                }
                for n in self.notes
            ],
        }
        # Round-trip through the workspace model: what a session gets is always valid.
        return Workspace.model_validate(workspace).model_dump(mode="json")

    def summary(self, today: date) -> WorkspaceSummary:
        return summarize(Workspace.model_validate(self.materialize(today)))


class TemplateCatalog:
    """The loaded templates, by account type, in file-name order."""

    def __init__(self, templates: list[WorkspaceTemplate]) -> None:
        self._templates = {t.account_type: t for t in templates}

    def __contains__(self, account_type: object) -> bool:
        return account_type in self._templates

    def __iter__(self):
        return iter(self._templates.values())

    def __len__(self) -> int:
        return len(self._templates)

    @property
    def account_types(self) -> list[str]:
        return list(self._templates)

    def get(self, account_type: str) -> WorkspaceTemplate | None:
        return self._templates.get(account_type)


def load_template(path: Path) -> WorkspaceTemplate:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TemplateError(f"demo template {path.name}: cannot read: {exc}") from exc
    try:
        template = WorkspaceTemplate.model_validate(raw)
    except ValidationError as exc:
        raise TemplateError(f"demo template {path.name}: invalid:\n{exc}") from exc
    if template.account_type != path.stem:
        raise TemplateError(
            f"demo template {path.name}: account_type {template.account_type!r} "
            f"must match the file name {path.stem!r}"
        )
    return template


def load_templates(directory: Path = TEMPLATES_DIR) -> TemplateCatalog:
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise TemplateError(f"no demo templates (*.json) in {directory}")
    return TemplateCatalog([load_template(path) for path in paths])
