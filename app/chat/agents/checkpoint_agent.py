"""checkpoint_agent: project milestones (4 tools); a new one needs its project_id."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from app.chat.agents.base import AgentTool, ChatAgent, ToolOutcome, Workspace, new_id
from app.chat.agents.registry import register
from app.chat.schemas import Action
from app.models import BillingTier

Status = Literal["pending", "reached", "missed"]


class ListCheckpointsInput(BaseModel):
    project_id: str | None = Field(default=None, description="Only this project's checkpoints.")
    status: Status | None = None


class CreateCheckpointInput(BaseModel):
    project_id: str = Field(min_length=1, description="The project the milestone belongs to.")
    title: str = Field(min_length=1, max_length=200)
    due_date: dt.date | None = None
    status: Status = "pending"


class UpdateCheckpointInput(BaseModel):
    checkpoint_id: str = Field(min_length=1)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    due_date: dt.date | None = None
    status: Status | None = None
    approved: bool | None = Field(default=None, description="Approve a suggested checkpoint.")


class CheckpointIdInput(BaseModel):
    checkpoint_id: str = Field(min_length=1)


def _describe(cp: dict) -> str:
    due = f", due {cp['due_date']}" if cp.get("due_date") else ""
    return f"“{cp.get('title', '')}” ({cp.get('status', 'pending')}{due})"


def _missing(checkpoint_id: str) -> ToolOutcome:
    return ToolOutcome(f"No checkpoint with id {checkpoint_id} in the workspace.", ok=False)


def list_checkpoints(ws: Workspace, args: ListCheckpointsInput) -> ToolOutcome:
    items = ws.items("checkpoints")
    if args.project_id:
        items = [c for c in items if c.get("project_id") == args.project_id]
    if args.status:
        items = [c for c in items if c.get("status") == args.status]
    items = sorted(items, key=lambda c: c.get("due_date") or "9999")
    if not items:
        return ToolOutcome("No matching checkpoints.", data=[])
    listed = "; ".join(_describe(c) for c in items[:20])
    return ToolOutcome(f"{len(items)} checkpoint(s): {listed}.", data=items)


def create_checkpoint(ws: Workspace, args: CreateCheckpointInput) -> ToolOutcome:
    project = ws.find("projects", args.project_id)
    if project is None:
        return ToolOutcome(f"No project with id {args.project_id} in the workspace.", ok=False)
    checkpoint_id = new_id("checkpoint")
    record = args.model_dump(mode="json", exclude_none=True)
    actions = [Action(type="create_record", table="checkpoints", id=checkpoint_id, data=record)]
    if args.due_date:
        actions.append(
            Action(
                type="send_notification",
                table="checkpoints",
                id=checkpoint_id,
                data={"title": args.title, "at": args.due_date.isoformat(), "kind": "milestone"},
            )
        )
    return ToolOutcome(
        f"Created checkpoint {_describe(record)} in project “{project.get('name', '')}”.",
        {"id": checkpoint_id, **record},
        actions,
    )


def update_checkpoint(ws: Workspace, args: UpdateCheckpointInput) -> ToolOutcome:
    checkpoint = ws.find("checkpoints", args.checkpoint_id)
    if checkpoint is None:
        return _missing(args.checkpoint_id)
    changes = args.model_dump(mode="json", exclude={"checkpoint_id"}, exclude_none=True)
    if not changes:
        return ToolOutcome("Nothing to change: give at least one field.", ok=False)
    action = Action(type="update_record", table="checkpoints", id=args.checkpoint_id, data=changes)
    merged = {**checkpoint, **changes}
    return ToolOutcome(f"Updated checkpoint {_describe(merged)}.", merged, [action])


def delete_checkpoint(ws: Workspace, args: CheckpointIdInput) -> ToolOutcome:
    checkpoint = ws.find("checkpoints", args.checkpoint_id)
    if checkpoint is None:
        return _missing(args.checkpoint_id)
    action = Action(type="delete_record", table="checkpoints", id=args.checkpoint_id)
    return ToolOutcome(
        f"Deleted checkpoint “{checkpoint.get('title', '')}”.", {"id": args.checkpoint_id}, [action]
    )


@register
class CheckpointAgent(ChatAgent):
    name = "checkpoint_agent"
    title = "Checkpoints"
    description = (
        "Manages project milestones: lists, creates (within a project), approves, reschedules, "
        "marks reached or missed, and deletes them."
    )
    examples = (
        "Show my upcoming checkpoints",
        "Add a milestone Beta release to the Garden party project next Friday",
        "Mark the Beta release checkpoint as reached",
    )
    tags = ("checkpoints", "milestones", "projects")
    prompt = (
        "You are Adiuva's checkpoint agent, managing project milestones. Every checkpoint "
        "belongs to a project: a new one needs its project_id. A checkpoint is pending, "
        "reached or missed, and a suggested one may await approval."
    )
    table = "checkpoints"
    nouns = {
        "checkpoints": (
            "checkpoint", "checkpoints", "milestone", "milestones", "meilenstein",
            "meilensteine", "meilensteins",
        ),
    }  # fmt: skip
    templates = {
        "tpl_checkpoint_agent_default": (
            "Adiuva plan template for checkpoints: from the user's request {message!r}, list "
            "the milestones to create or change, each with its project_id."
        ),
    }
    # Milestones are a paid feature (SPEC §2: free workspaces have three agents).
    minimum_tier = BillingTier.PRO

    def get_tools(self) -> list[AgentTool]:
        return [
            AgentTool(
                "list_checkpoints",
                "List checkpoints, optionally of one project.",
                ListCheckpointsInput,
                list_checkpoints,
            ),
            AgentTool(
                "create_checkpoint",
                "Create a checkpoint in a project (project_id required).",
                CreateCheckpointInput,
                create_checkpoint,
            ),
            AgentTool(
                "update_checkpoint",
                "Rename, reschedule, approve, or mark a checkpoint reached or missed.",
                UpdateCheckpointInput,
                update_checkpoint,
            ),
            AgentTool(
                "delete_checkpoint", "Delete a checkpoint.", CheckpointIdInput, delete_checkpoint
            ),
        ]
