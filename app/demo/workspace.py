"""A demo session's workspace: projects, tasks, checkpoints and notes, as the agents see them.

The same shapes the chat agents read from a request's `context` (task status
todo/in_progress/done, priority high/medium/low, checkpoints tied to a
project). A session's copy lives as JSON in `demo_sessions.workspace`; every
change goes through `apply_actions`, which applies the agents' action
descriptors as chat answers carry them (`app.chat.schemas.Action`: the record's id
in `id`, its fields in `data`, a task's comments in the `comments` table) to a copy
and re-validates the whole workspace, so a session can never hold a dangling
reference.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.chat.schemas import Action

TaskStatus = Literal["todo", "in_progress", "done"]
Priority = Literal["high", "medium", "low"]
ProjectStatus = Literal["active", "archived"]
CheckpointStatus = Literal["pending", "reached", "missed"]

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")]


def _id(example: str) -> Any:
    """A record id field, with an example id of its own kind."""
    return Field(examples=[example])


def _ref(example: str) -> Any:
    """A reference to a project, with an example id of one."""
    return Field(default=None, examples=[example])


class _Entity(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Comment(_Entity):
    id: Identifier = _id("comment_nw_packaging_feedback")
    author: str = Field(min_length=1, max_length=100)
    body: str = Field(min_length=1, max_length=4000)
    created_at: datetime


class Project(_Entity):
    id: Identifier = _id("project_northwind_rebrand")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    status: ProjectStatus = "active"
    due_date: date | None = None


class Task(_Entity):
    id: Identifier = _id("task_nw_packaging")
    project_id: str | None = _ref("project_northwind_rebrand")
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=4000)
    status: TaskStatus = "todo"
    priority: Priority = "medium"
    due_date: date | None = None
    assignee: str | None = Field(default=None, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=20)
    comments: list[Comment] = Field(default_factory=list)


class Checkpoint(_Entity):
    id: Identifier = _id("checkpoint_nw_logo")
    project_id: str = Field(examples=["project_northwind_rebrand"])
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=4000)
    due_date: date | None = None
    status: CheckpointStatus = "pending"
    ai_suggested: bool = False
    approved: bool = True


class Note(_Entity):
    id: Identifier = _id("note_nw_call")
    project_id: str | None = _ref("project_northwind_rebrand")
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(default="", max_length=20000)
    tags: list[str] = Field(default_factory=list, max_length=20)
    updated_at: datetime


class PersonaProfile(_Entity):
    """The sample workspace's owner: the persona a demo visitor plays."""

    name: str
    role: str
    timezone: str = "UTC"


class Workspace(_Entity):
    """One workspace; ids are unique across all its records and every reference resolves."""

    account_type: str
    name: str
    user_profile: PersonaProfile
    projects: list[Project]
    tasks: list[Task]
    checkpoints: list[Checkpoint]
    notes: list[Note]

    @model_validator(mode="after")
    def _references_resolve(self) -> Workspace:
        check_references(self.projects, self.tasks, self.checkpoints, self.notes)
        return self


def check_references(
    projects: Iterable[Any], tasks: Iterable[Any], checkpoints: Iterable[Any], notes: Iterable[Any]
) -> None:
    """Raise ValueError on a duplicate id or a project reference that does not resolve."""
    projects, tasks, checkpoints, notes = (
        list(projects),
        list(tasks),
        list(checkpoints),
        list(notes),
    )
    seen: set[str] = set()
    for record in [*projects, *tasks, *checkpoints, *notes]:
        ids = [record.id, *(c.id for c in getattr(record, "comments", ()))]
        for id_ in ids:
            if id_ in seen:
                raise ValueError(f"duplicate id {id_!r}")
            seen.add(id_)
    project_ids = {p.id for p in projects}
    for kind, records in (("task", tasks), ("checkpoint", checkpoints), ("note", notes)):
        for record in records:
            if record.project_id is not None and record.project_id not in project_ids:
                raise ValueError(
                    f"{kind} {record.id!r} refers to unknown project {record.project_id!r}"
                )


class WorkspaceSummary(BaseModel):
    projects: int
    active_projects: int
    tasks: int
    tasks_by_status: dict[str, int]
    tasks_by_priority: dict[str, int]
    checkpoints: int
    notes: int


def summarize(workspace: Workspace) -> WorkspaceSummary:
    by_status = {status: 0 for status in ("todo", "in_progress", "done")}
    by_priority = {priority: 0 for priority in ("high", "medium", "low")}
    for task in workspace.tasks:
        by_status[task.status] += 1
        by_priority[task.priority] += 1
    return WorkspaceSummary(
        projects=len(workspace.projects),
        active_projects=sum(p.status == "active" for p in workspace.projects),
        tasks=len(workspace.tasks),
        tasks_by_status=by_status,
        tasks_by_priority=by_priority,
        checkpoints=len(workspace.checkpoints),
        notes=len(workspace.notes),
    )


# --- actions -------------------------------------------------------------------

_MODELS: dict[str, type[_Entity]] = {
    "projects": Project,
    "tasks": Task,
    "checkpoints": Checkpoint,
    "notes": Note,
    "comments": Comment,
}
_ID_PREFIX = {
    "projects": "project",
    "tasks": "task",
    "checkpoints": "checkpoint",
    "notes": "note",
    "comments": "comment",
}
# What the client does on its own device (re-embed a note for its search, schedule a
# reminder): nothing of the workspace changes.
_DEVICE_ACTIONS = frozenset({"index_document", "send_notification"})


class ActionError(ValueError):
    """An action that cannot apply: unknown record, duplicate id, invalid fields."""

    def __init__(self, message: str, *, status: Literal[404, 409, 422] = 422) -> None:
        super().__init__(message)
        self.status = status


def _new_id(table: str) -> str:
    return f"{_ID_PREFIX[table]}_{secrets.token_hex(4)}"


def _errors_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


def apply_actions(workspace: dict[str, Any], actions: Iterable[Action]) -> dict[str, Any]:
    """Apply actions to a copy of `workspace` (JSON form) and return the validated result."""
    current = Workspace.model_validate(workspace)
    data = current.model_dump(mode="json")  # a fresh copy: the input is never mutated
    for action in actions:
        if action.type in _DEVICE_ACTIONS:
            continue
        if action.table not in _MODELS:
            raise ActionError(f"{action.type} needs a table of the workspace: {', '.join(_MODELS)}")
        if "id" in action.data:
            raise ActionError("the record's id goes in `id`, beside `data`")
        _apply(data, action)
    try:
        return Workspace.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise ActionError(_errors_text(exc)) from exc


def _apply(data: dict[str, Any], action: Action) -> None:
    table = str(action.table)
    if table == "comments":
        _apply_comment(data, action)
        return
    records: list[dict[str, Any]] = data[table]
    model = _MODELS[table]
    if action.type == "create_record":
        fields = {**action.data, "id": action.id or _new_id(table)}
        if table == "notes":
            fields.setdefault("updated_at", datetime.now(UTC).isoformat())
        try:
            record = model.model_validate(fields)
        except ValidationError as exc:
            raise ActionError(_errors_text(exc)) from exc
        records.append(record.model_dump(mode="json"))
        return
    index = _find(records, action)
    if action.type == "update_record":
        merged = {**records[index], **action.data}
        if table == "notes" and "updated_at" not in action.data:
            merged["updated_at"] = datetime.now(UTC).isoformat()
        try:
            records[index] = model.model_validate(merged).model_dump(mode="json")
        except ValidationError as exc:
            raise ActionError(_errors_text(exc)) from exc
        return
    removed = records.pop(index)
    if table == "projects":
        # Like the project agent's delete: the project's tasks and checkpoints go with it,
        # its notes stay, detached.
        data["tasks"] = [t for t in data["tasks"] if t.get("project_id") != removed["id"]]
        data["checkpoints"] = [
            c for c in data["checkpoints"] if c.get("project_id") != removed["id"]
        ]
        for note in data["notes"]:
            if note.get("project_id") == removed["id"]:
                note["project_id"] = None


def _find(records: list[dict[str, Any]], action: Action) -> int:
    record_id = action.id
    if not record_id:
        raise ActionError(f"{action.type} on {action.table} needs the record's id")
    for index, record in enumerate(records):
        if record["id"] == record_id:
            return index
    raise ActionError(f"no record {record_id!r} in {action.table}", status=404)


def _apply_comment(data: dict[str, Any], action: Action) -> None:
    if action.type == "update_record":
        raise ActionError("task comments cannot be edited; delete and add one instead")
    if action.type == "create_record":
        task_id = action.data.get("task_id")
        task = next((t for t in data["tasks"] if t["id"] == task_id), None)
        if task is None:
            raise ActionError(f"no task {task_id!r} to comment on", status=404)
        fields = {k: v for k, v in action.data.items() if k != "task_id"}
        fields["id"] = action.id or _new_id("comments")
        fields.setdefault("author", data["user_profile"]["name"])
        fields.setdefault("created_at", datetime.now(UTC).isoformat())
        try:
            comment = Comment.model_validate(fields)
        except ValidationError as exc:
            raise ActionError(_errors_text(exc)) from exc
        task["comments"].append(comment.model_dump(mode="json"))
        return
    comment_id = action.id
    for task in data["tasks"]:
        for index, comment in enumerate(task["comments"]):
            if comment["id"] == comment_id:
                task["comments"].pop(index)
                return
    raise ActionError(f"no comment {comment_id!r}", status=404)
