"""task_agent: tasks and task comments (8 tools)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from app.chat.agents.base import AgentTool, ChatAgent, ToolOutcome, Workspace, new_id, now_iso
from app.chat.agents.registry import register
from app.chat.schemas import Action
from app.models import BillingTier

Status = Literal["todo", "in_progress", "done"]
Priority = Literal["high", "medium", "low"]
_RANK = {"high": 0, "medium": 1, "low": 2}


class ListTasksInput(BaseModel):
    status: Status | None = Field(default=None, description="Only tasks in this status.")
    priority: Priority | None = Field(default=None, description="Only tasks of this priority.")
    project_id: str | None = Field(default=None, description="Only tasks of this project.")
    query: str | None = Field(default=None, max_length=200, description="Words in the title.")


class CreateTaskInput(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    priority: Priority = "medium"
    status: Status = "todo"
    due_date: dt.date | None = Field(default=None, description="ISO date, YYYY-MM-DD.")
    project_id: str | None = Field(default=None, description="The project it belongs to.")
    remind: bool = Field(default=False, description="Notify the user on the due date.")


class UpdateTaskInput(BaseModel):
    task_id: str = Field(min_length=1)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    status: Status | None = None
    priority: Priority | None = None
    due_date: dt.date | None = None
    project_id: str | None = None


class TaskIdInput(BaseModel):
    task_id: str = Field(min_length=1)


class DueTodayInput(BaseModel):
    include_overdue: bool = Field(default=True, description="Also list open overdue tasks.")


class AddCommentInput(BaseModel):
    task_id: str = Field(min_length=1)
    body: str = Field(min_length=1, max_length=5000)


class CommentIdInput(BaseModel):
    comment_id: str = Field(min_length=1)


def _describe(task: dict) -> str:
    extras = [task.get("status", "todo"), f"{task.get('priority', 'medium')} priority"]
    if task.get("due_date"):
        extras.append(f"due {task['due_date']}")
    return f"“{task.get('title', '')}” ({', '.join(extras)})"


def _missing(task_id: str) -> ToolOutcome:
    return ToolOutcome(f"No task with id {task_id} in the workspace.", ok=False)


def _sorted(tasks: list[dict]) -> list[dict]:
    return sorted(
        tasks, key=lambda t: (t.get("due_date") or "9999", _RANK.get(t.get("priority"), 1))
    )


def list_tasks(ws: Workspace, args: ListTasksInput) -> ToolOutcome:
    tasks = ws.items("tasks")
    if args.status:
        tasks = [t for t in tasks if t.get("status") == args.status]
    if args.priority:
        tasks = [t for t in tasks if t.get("priority") == args.priority]
    if args.project_id:
        tasks = [t for t in tasks if t.get("project_id") == args.project_id]
    if args.query:
        words = args.query.lower().split()
        tasks = [t for t in tasks if all(w in t.get("title", "").lower() for w in words)]
    tasks = _sorted(tasks)
    if not tasks:
        return ToolOutcome("No matching tasks.", data=[])
    listed = "; ".join(_describe(t) for t in tasks[:10])
    more = f" and {len(tasks) - 10} more" if len(tasks) > 10 else ""
    return ToolOutcome(f"{len(tasks)} task(s): {listed}{more}.", data=tasks)


def create_task(ws: Workspace, args: CreateTaskInput) -> ToolOutcome:
    if args.project_id and ws.find("projects", args.project_id) is None:
        return ToolOutcome(f"No project with id {args.project_id} in the workspace.", ok=False)
    record = args.model_dump(mode="json", exclude={"remind"}, exclude_none=True)
    task_id = new_id("task")
    actions = [Action(type="create_record", table="tasks", id=task_id, data=record)]
    if args.remind and args.due_date:
        actions.append(
            Action(
                type="send_notification",
                table="tasks",
                id=task_id,
                data={"title": args.title, "at": args.due_date.isoformat(), "kind": "reminder"},
            )
        )
    return ToolOutcome(f"Created task {_describe(record)}.", {"id": task_id, **record}, actions)


def update_task(ws: Workspace, args: UpdateTaskInput) -> ToolOutcome:
    task = ws.find("tasks", args.task_id)
    if task is None:
        return _missing(args.task_id)
    changes = args.model_dump(mode="json", exclude={"task_id"}, exclude_none=True)
    if not changes:
        return ToolOutcome("Nothing to change: give at least one field.", ok=False)
    if "project_id" in changes and ws.find("projects", changes["project_id"]) is None:
        return ToolOutcome(
            f"No project with id {changes['project_id']} in the workspace.", ok=False
        )
    action = Action(type="update_record", table="tasks", id=args.task_id, data=changes)
    return ToolOutcome(
        f"Updated task {_describe({**task, **changes})}.", {**task, **changes}, [action]
    )


def delete_task(ws: Workspace, args: TaskIdInput) -> ToolOutcome:
    task = ws.find("tasks", args.task_id)
    if task is None:
        return _missing(args.task_id)
    actions = [Action(type="delete_record", table="tasks", id=args.task_id)]
    actions += [
        Action(type="delete_record", table="comments", id=c["id"])
        for c in ws.items("comments")
        if c.get("task_id") == args.task_id
    ]
    return ToolOutcome(f"Deleted task “{task.get('title', '')}”.", {"id": args.task_id}, actions)


def list_tasks_due_today(ws: Workspace, args: DueTodayInput) -> ToolOutcome:
    today = ws.today.isoformat()
    tasks = [
        t
        for t in ws.items("tasks")
        if t.get("status") != "done"
        and t.get("due_date")
        and (t["due_date"] == today or (args.include_overdue and t["due_date"] < today))
    ]
    if not tasks:
        return ToolOutcome(f"Nothing is due today ({today}).", data=[])
    listed = "; ".join(_describe(t) for t in _sorted(tasks)[:10])
    return ToolOutcome(f"{len(tasks)} task(s) due by today ({today}): {listed}.", data=tasks)


def list_task_comments(ws: Workspace, args: TaskIdInput) -> ToolOutcome:
    task = ws.find("tasks", args.task_id)
    if task is None:
        return _missing(args.task_id)
    comments = [c for c in ws.items("comments") if c.get("task_id") == args.task_id]
    if not comments:
        return ToolOutcome(f"Task “{task.get('title', '')}” has no comments.", data=[])
    listed = "; ".join(f"“{c.get('body', '')}”" for c in comments[:10])
    return ToolOutcome(
        f"{len(comments)} comment(s) on “{task.get('title', '')}”: {listed}.", data=comments
    )


def add_task_comment(ws: Workspace, args: AddCommentInput) -> ToolOutcome:
    task = ws.find("tasks", args.task_id)
    if task is None:
        return _missing(args.task_id)
    comment_id = new_id("comment")
    record = {"task_id": args.task_id, "body": args.body, "created_at": now_iso()}
    action = Action(type="create_record", table="comments", id=comment_id, data=record)
    return ToolOutcome(
        f"Added a comment to “{task.get('title', '')}”.", {"id": comment_id, **record}, [action]
    )


def delete_task_comment(ws: Workspace, args: CommentIdInput) -> ToolOutcome:
    comment = ws.find("comments", args.comment_id)
    if comment is None:
        return ToolOutcome(f"No comment with id {args.comment_id} in the workspace.", ok=False)
    action = Action(type="delete_record", table="comments", id=args.comment_id)
    return ToolOutcome("Deleted the comment.", {"id": args.comment_id}, [action])


@register
class TaskAgent(ChatAgent):
    name = "task_agent"
    title = "Tasks"
    description = (
        "Creates, updates, lists and deletes tasks (status todo/in_progress/done, priority "
        "high/medium/low, due dates, projects) and their comments."
    )
    examples = (
        "Add a task to call Anna tomorrow, high priority",
        "What is due today?",
        "Show my high priority tasks",
        "Mark the call Anna task as done",
    )
    tags = ("tasks", "todo", "comments", "due dates")
    prompt = (
        "You are Adiuva's task agent, managing the user's tasks and task comments. "
        "A task has a title, a status (todo, in_progress, done), a priority (high, medium, "
        "low), an optional due date and an optional project."
    )
    table = "tasks"
    nouns = {
        "tasks": (
            "task", "tasks", "todo", "todos", "to-do", "to-dos", "reminder", "reminders",
            "aufgabe", "aufgaben",
        ),
        "comments": ("comment", "comments", "kommentar", "kommentare", "kommentiere"),
    }  # fmt: skip
    templates = {
        "tpl_task_agent_default": (
            "Adiuva plan template for tasks: from the user's request {message!r} and the "
            "workspace, list the task changes to make as create, update or delete operations."
        ),
        "tpl_task_extract_from_project": (
            "Adiuva plan template for task extraction: read the project {project_id} and its "
            "notes and extract every actionable task, each with a title, priority and due date."
        ),
    }
    minimum_tier = BillingTier.FREE

    def get_tools(self) -> list[AgentTool]:
        return [
            AgentTool("list_tasks", "List tasks, optionally filtered.", ListTasksInput, list_tasks),
            AgentTool("create_task", "Create a task.", CreateTaskInput, create_task),
            AgentTool(
                "update_task",
                "Change a task's fields (only those given).",
                UpdateTaskInput,
                update_task,
            ),
            AgentTool("delete_task", "Delete a task and its comments.", TaskIdInput, delete_task),
            AgentTool(
                "list_tasks_due_today",
                "List open tasks due today (and overdue ones).",
                DueTodayInput,
                list_tasks_due_today,
            ),
            AgentTool(
                "list_task_comments",
                "List the comments of a task.",
                TaskIdInput,
                list_task_comments,
            ),
            AgentTool(
                "add_task_comment", "Add a comment to a task.", AddCommentInput, add_task_comment
            ),
            AgentTool(
                "delete_task_comment", "Delete a task comment.", CommentIdInput, delete_task_comment
            ),
        ]
