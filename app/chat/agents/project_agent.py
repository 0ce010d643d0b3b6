"""project_agent: project lifecycle (6 tools); archiving is preferred to deletion."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.chat.agents.base import AgentTool, ChatAgent, ToolOutcome, Workspace, new_id
from app.chat.agents.registry import register
from app.chat.schemas import Action
from app.models import BillingTier


class NoInput(BaseModel):
    pass


class ProjectIdInput(BaseModel):
    project_id: str = Field(min_length=1)


class CreateProjectInput(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)


class UpdateProjectInput(BaseModel):
    project_id: str = Field(min_length=1)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    status: Literal["active", "archived"] | None = None


class DeleteProjectInput(BaseModel):
    project_id: str = Field(min_length=1)
    permanent: bool = Field(
        default=False,
        description="Delete for good. By default the project is archived instead.",
    )


def _missing(project_id: str) -> ToolOutcome:
    return ToolOutcome(f"No project with id {project_id} in the workspace.", ok=False)


def _listing(projects: list[dict], label: str) -> ToolOutcome:
    if not projects:
        return ToolOutcome(f"No {label}.", data=[])
    listed = "; ".join(
        f"“{p.get('name', '')}” ({p.get('status', 'active')})" for p in projects[:20]
    )
    return ToolOutcome(f"{len(projects)} {label}: {listed}.", data=projects)


def list_projects(ws: Workspace, _: NoInput) -> ToolOutcome:
    active = [p for p in ws.items("projects") if p.get("status", "active") == "active"]
    return _listing(active, "active project(s)")


def list_all_projects(ws: Workspace, _: NoInput) -> ToolOutcome:
    return _listing(ws.items("projects"), "project(s), archived included")


def get_project(ws: Workspace, args: ProjectIdInput) -> ToolOutcome:
    project = ws.find("projects", args.project_id)
    if project is None:
        return _missing(args.project_id)
    tasks = [t for t in ws.items("tasks") if t.get("project_id") == args.project_id]
    open_tasks = sum(1 for t in tasks if t.get("status") != "done")
    checkpoints = [c for c in ws.items("checkpoints") if c.get("project_id") == args.project_id]
    data = {
        **project,
        "task_count": len(tasks),
        "open_tasks": open_tasks,
        "checkpoint_count": len(checkpoints),
    }
    return ToolOutcome(
        f"Project “{project.get('name', '')}” is {project.get('status', 'active')} with "
        f"{len(tasks)} task(s) ({open_tasks} open) and {len(checkpoints)} checkpoint(s).",
        data,
    )


def create_project(ws: Workspace, args: CreateProjectInput) -> ToolOutcome:
    project_id = new_id("project")
    record = {**args.model_dump(mode="json", exclude_none=True), "status": "active"}
    action = Action(type="create_record", table="projects", id=project_id, data=record)
    return ToolOutcome(f"Created project “{args.name}”.", {"id": project_id, **record}, [action])


def update_project(ws: Workspace, args: UpdateProjectInput) -> ToolOutcome:
    project = ws.find("projects", args.project_id)
    if project is None:
        return _missing(args.project_id)
    changes = args.model_dump(mode="json", exclude={"project_id"}, exclude_none=True)
    if not changes:
        return ToolOutcome("Nothing to change: give at least one field.", ok=False)
    action = Action(type="update_record", table="projects", id=args.project_id, data=changes)
    name = changes.get("name", project.get("name", ""))
    return ToolOutcome(f"Updated project “{name}”.", {**project, **changes}, [action])


def delete_project(ws: Workspace, args: DeleteProjectInput) -> ToolOutcome:
    project = ws.find("projects", args.project_id)
    if project is None:
        return _missing(args.project_id)
    name = project.get("name", "")
    if not args.permanent:
        action = Action(
            type="update_record", table="projects", id=args.project_id, data={"status": "archived"}
        )
        return ToolOutcome(
            f"Archived project “{name}” (it can be restored).",
            {**project, "status": "archived"},
            [action],
        )
    action = Action(type="delete_record", table="projects", id=args.project_id)
    return ToolOutcome(f"Deleted project “{name}” permanently.", {"id": args.project_id}, [action])


@register
class ProjectAgent(ChatAgent):
    name = "project_agent"
    title = "Projects"
    description = (
        "Creates, renames, lists and archives projects; deletes one only when asked to "
        "delete it permanently."
    )
    examples = (
        "Create a project called Garden party",
        "Show all my projects, archived ones included",
        "Which projects are active?",
        "Archive the Garden party project",
    )
    tags = ("projects", "archive", "overview")
    prompt = (
        "You are Adiuva's project agent, managing the user's projects. A project has a "
        "name, a description and a status (active, archived). Prefer archiving a project "
        "over deleting it unless the user insists on deletion."
    )
    table = "projects"
    nouns = {"projects": ("project", "projects", "projekt", "projekte", "projekts")}
    templates = {
        "tpl_project_agent_default": (
            "Adiuva plan template for projects: from the user's request {message!r} and the "
            "workspace, list the project changes to make, archiving rather than deleting."
        ),
    }
    minimum_tier = BillingTier.FREE

    def get_tools(self) -> list[AgentTool]:
        return [
            AgentTool("list_projects", "List active projects.", NoInput, list_projects),
            AgentTool(
                "list_all_projects",
                "List every project, archived ones included.",
                NoInput,
                list_all_projects,
            ),
            AgentTool(
                "get_project",
                "A project with its task and checkpoint counts.",
                ProjectIdInput,
                get_project,
            ),
            AgentTool("create_project", "Create a project.", CreateProjectInput, create_project),
            AgentTool(
                "update_project",
                "Rename, describe, archive or restore a project.",
                UpdateProjectInput,
                update_project,
            ),
            AgentTool(
                "delete_project",
                "Archive a project (or delete it with permanent=true).",
                DeleteProjectInput,
                delete_project,
            ),
        ]
