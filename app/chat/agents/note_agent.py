"""note_agent: Markdown notes, optionally linked to a project (5 tools)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.chat.agents.base import AgentTool, ChatAgent, ToolOutcome, Workspace, new_id, now_iso
from app.chat.agents.registry import register
from app.chat.schemas import Action
from app.models import BillingTier


class ListNotesInput(BaseModel):
    project_id: str | None = None
    query: str | None = Field(default=None, max_length=200, description="Words in title or body.")


class NoteIdInput(BaseModel):
    note_id: str = Field(min_length=1)


class CreateNoteInput(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=50_000, description="Markdown.")
    project_id: str | None = None


class UpdateNoteInput(BaseModel):
    note_id: str = Field(min_length=1)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=50_000, description="Replaces the body.")
    append: str | None = Field(default=None, max_length=50_000, description="Added to the body.")
    project_id: str | None = None


def _missing(note_id: str) -> ToolOutcome:
    return ToolOutcome(f"No note with id {note_id} in the workspace.", ok=False)


def _index(note_id: str) -> Action:
    # The client re-embeds the (encrypted) note for its vector search.
    return Action(type="index_document", table="notes", id=note_id)


def list_notes(ws: Workspace, args: ListNotesInput) -> ToolOutcome:
    notes = ws.items("notes")
    if args.project_id:
        notes = [n for n in notes if n.get("project_id") == args.project_id]
    if args.query:
        words = args.query.lower().split()
        notes = [
            n
            for n in notes
            if all(w in f"{n.get('title', '')} {n.get('body', '')}".lower() for w in words)
        ]
    if not notes:
        return ToolOutcome("No matching notes.", data=[])
    listed = "; ".join(f"“{n.get('title', '')}”" for n in notes[:20])
    data = [{k: v for k, v in n.items() if k != "body"} for n in notes]
    return ToolOutcome(f"{len(notes)} note(s): {listed}.", data=data)


def get_note(ws: Workspace, args: NoteIdInput) -> ToolOutcome:
    note = ws.find("notes", args.note_id)
    if note is None:
        return _missing(args.note_id)
    body = note.get("body", "")
    preview = body if len(body) <= 280 else body[:277] + "…"
    return ToolOutcome(f"Note “{note.get('title', '')}”: {preview}", note)


def create_note(ws: Workspace, args: CreateNoteInput) -> ToolOutcome:
    if args.project_id and ws.find("projects", args.project_id) is None:
        return ToolOutcome(f"No project with id {args.project_id} in the workspace.", ok=False)
    note_id = new_id("note")
    record = {**args.model_dump(mode="json", exclude_none=True), "updated_at": now_iso()}
    actions = [
        Action(type="create_record", table="notes", id=note_id, data=record),
        _index(note_id),
    ]
    return ToolOutcome(f"Created note “{args.title}”.", {"id": note_id, **record}, actions)


def update_note(ws: Workspace, args: UpdateNoteInput) -> ToolOutcome:
    note = ws.find("notes", args.note_id)
    if note is None:
        return _missing(args.note_id)
    changes = args.model_dump(mode="json", exclude={"note_id", "append"}, exclude_none=True)
    if args.append:
        base = changes.get("body", note.get("body", ""))
        changes["body"] = f"{base}\n\n{args.append}" if base else args.append
    if not changes:
        return ToolOutcome("Nothing to change: give at least one field.", ok=False)
    changes["updated_at"] = now_iso()
    actions = [
        Action(type="update_record", table="notes", id=args.note_id, data=changes),
        _index(args.note_id),
    ]
    title = changes.get("title", note.get("title", ""))
    return ToolOutcome(f"Updated note “{title}”.", {**note, **changes}, actions)


def delete_note(ws: Workspace, args: NoteIdInput) -> ToolOutcome:
    note = ws.find("notes", args.note_id)
    if note is None:
        return _missing(args.note_id)
    action = Action(type="delete_record", table="notes", id=args.note_id)
    return ToolOutcome(f"Deleted note “{note.get('title', '')}”.", {"id": args.note_id}, [action])


@register
class NoteAgent(ChatAgent):
    name = "note_agent"
    title = "Notes"
    description = (
        "Writes, reads, edits, lists and deletes Markdown notes, linked to projects or not."
    )
    examples = (
        "Write a note about the kickoff: we ship the beta on Friday",
        "List my notes",
        "Show the kickoff note",
    )
    tags = ("notes", "markdown", "writing")
    prompt = (
        "You are Adiuva's note agent, managing the user's Markdown notes, optionally linked "
        "to a project. Keep the user's wording in note bodies."
    )
    table = "notes"
    nouns = {"notes": ("note", "notes", "notiz", "notizen", "memo", "memos")}
    templates = {
        "tpl_note_agent_default": (
            "Adiuva plan template for notes: from the user's request {message!r}, write the "
            "notes to create or change, in Markdown."
        ),
        "tpl_note_weekly_summary": (
            "Adiuva plan template for the weekly note: summarise the tasks completed, started "
            "and due in the week starting {week_start} as a Markdown note with headings."
        ),
    }
    minimum_tier = BillingTier.FREE

    def get_tools(self) -> list[AgentTool]:
        return [
            AgentTool("list_notes", "List notes, optionally filtered.", ListNotesInput, list_notes),
            AgentTool("get_note", "Read one note.", NoteIdInput, get_note),
            AgentTool("create_note", "Create a Markdown note.", CreateNoteInput, create_note),
            AgentTool(
                "update_note",
                "Change a note's title or body, or append to it.",
                UpdateNoteInput,
                update_note,
            ),
            AgentTool("delete_note", "Delete a note.", NoteIdInput, delete_note),
        ]
