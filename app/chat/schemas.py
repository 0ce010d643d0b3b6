"""Chat request/response shapes, action descriptors, plans and agent metadata."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaValue


def _registered() -> list[str]:
    # The agents import this module for their shapes; the registry is read when used.
    from app.chat.agents.registry import registry

    return registry.names()


def _agent_name(value: str) -> str:
    names = _registered()
    if value not in names:
        raise ValueError(f"unknown agent; one of {', '.join(names)}")
    return value


class _AgentNameSchema:
    """An enum of the registered agents, read when the document is generated."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> JsonSchemaValue:
        return {"type": "string", "enum": _registered()}


# A registered agent's name: validated against the registry, an enum in the documents.
AgentName = Annotated[str, AfterValidator(_agent_name), _AgentNameSchema()]
ActionType = Literal[
    "create_record", "update_record", "delete_record", "index_document", "send_notification"
]
MAX_CONTEXT_ITEMS = 2000
# A client's "today": wide enough for any real clock, far enough from year 9999 that
# relative dates ("in 999 weeks", "end of next month") stay valid dates.
EARLIEST_TODAY = dt.date(1970, 1, 1)
LATEST_TODAY = dt.date(2999, 12, 31)


class _Item(BaseModel):
    # The client's records may carry fields this server does not know; keep them.
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=128)


class TaskItem(_Item):
    title: str = Field(default="", max_length=500)
    status: Literal["todo", "in_progress", "done"] = "todo"
    priority: Literal["high", "medium", "low"] = "medium"
    due_date: dt.date | None = None
    project_id: str | None = None
    description: str | None = Field(default=None, max_length=10_000)


class ProjectItem(_Item):
    name: str = Field(default="", max_length=500)
    status: Literal["active", "archived"] = "active"
    description: str | None = Field(default=None, max_length=10_000)


class CheckpointItem(_Item):
    title: str = Field(default="", max_length=500)
    project_id: str
    due_date: dt.date | None = None
    status: Literal["pending", "reached", "missed"] = "pending"
    approved: bool = True


class NoteItem(_Item):
    title: str = Field(default="", max_length=500)
    body: str = Field(default="", max_length=50_000)
    project_id: str | None = None


class CommentItem(_Item):
    task_id: str
    body: str = Field(default="", max_length=10_000)


class ChatContext(BaseModel):
    """The client's local data for this request; nothing of it is stored."""

    today: dt.date | None = Field(
        default=None,
        ge=EARLIEST_TODAY,
        le=LATEST_TODAY,
        description="The client's local date; relative dates resolve from it.",
    )
    tasks: list[TaskItem] = Field(default_factory=list, max_length=MAX_CONTEXT_ITEMS)
    projects: list[ProjectItem] = Field(default_factory=list, max_length=MAX_CONTEXT_ITEMS)
    checkpoints: list[CheckpointItem] = Field(default_factory=list, max_length=MAX_CONTEXT_ITEMS)
    notes: list[NoteItem] = Field(default_factory=list, max_length=MAX_CONTEXT_ITEMS)
    comments: list[CommentItem] = Field(default_factory=list, max_length=MAX_CONTEXT_ITEMS)


class HistoryMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=8000)


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=8000)
    context: ChatContext | None = None
    history: list[HistoryMessage] = Field(default_factory=list, max_length=20)
    execution_mode: Literal["direct", "plan"] = "direct"
    agent: AgentName | None = Field(
        default=None, description="Skip intent classification and use this agent."
    )


class Action(BaseModel):
    """A change for the client to apply to its local data.

    The one shape of an action: chat answers carry it, clients apply it as it comes, and
    a demo session's workspace takes it unchanged
    (`POST /demo/sessions/{id}/workspace/actions`).
    """

    type: ActionType
    table: str | None = Field(
        default=None,
        description="tasks, projects, checkpoints, notes or comments (a task's comments).",
        examples=["tasks"],
    )
    id: str | None = Field(
        default=None,
        description="The record's id; on create_record the id the new record gets.",
        examples=["task_nw_packaging"],
    )
    data: dict[str, Any] = Field(
        default_factory=dict,
        description="The record's fields: all of them to create, the changed ones to update.",
    )


class ChatResponse(BaseModel):
    response: str
    actions: list[Action]
    agent: str
    demo: bool = False


class PlanStep(BaseModel):
    id: str
    kind: Literal["llm", "data", "agent"]
    template_id: str | None = None
    agent: str | None = None
    action: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    data_from_step: str | None = None
    depends_on: list[str] = Field(default_factory=list)


class ExecutionPlan(BaseModel):
    plan_id: str
    agent: str
    steps: list[PlanStep]
    playbook: str | None = None
    demo: bool = False


class Playbook(BaseModel):
    id: str
    name: str
    description: str
    steps: list[PlanStep]


class ToolInfo(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]


class AgentInfo(BaseModel):
    id: str
    name: str
    description: str
    tools: list[ToolInfo]
    examples: list[str]
    tags: list[str]
    tiers: list[str]


# --- WebSocket frames of /chat/stream (the AsyncAPI document is generated from these) --
# The client sends one `ChatRequest` frame; the server answers with the frames below, each
# a JSON object told apart by its first key.


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The frame as it is sent (a JSON text frame)."""
        return self.model_dump(mode="json")


class DemoModeFrame(_Frame):
    """First, when the answer comes from the offline demo model (what `X-Demo-Mode` says
    over REST)."""

    demo: Literal[True]


class TokenFrame(_Frame):
    """A piece of the answer's text, as the model produces it."""

    token: str


class DoneFrame(_Frame):
    """The last frame of an answer: the whole text, the actions for the client to apply."""

    done: Literal[True]
    response: str
    actions: list[Action]
    agent: str = Field(description="The agent that answered; several joined by commas.")
    demo: bool = Field(description="The answer comes from the offline demo model.")
    plan: ExecutionPlan | None = Field(
        default=None,
        exclude_if=lambda plan: plan is None,
        description="With `execution_mode: plan`: the plan (and an empty `response`).",
    )


class PingFrame(_Frame):
    """Sent every `WS_PING_INTERVAL_SECONDS` while an answer is under way."""

    ping: Literal[True]


class ErrorFrame(_Frame):
    """A refusal or failure, in the error shape of the REST API; the close code follows."""

    error: str = Field(examples=["invalid_frame"])
    message: str
    request_id: str | None


RunStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
StepStatusName = Literal["pending", "running", "succeeded", "failed", "cancelled"]


class PlanRunFrame(_Frame):
    """First, after a `run_plan` request: the run started (poll or cancel it by this id)."""

    plan_run: str = Field(description="The run's id (`GET`/`DELETE /api/v1/plans/runs/{id}`).")
    plan_id: str | None
    playbook: str | None
    steps: list[str] = Field(description="The step ids, in the order they run.")
    demo: bool = Field(description="The run's model calls go to the offline demo model.")


class PlanStepFrame(_Frame):
    """A step of a plan run started or ended; an ended step carries its output."""

    plan_step: str = Field(description="The step's id.")
    run_id: str
    kind: Literal["llm", "data", "agent"]
    status: StepStatusName
    text: str | None = Field(
        default=None, description="An llm step's answer text (sanitized like chat output)."
    )
    actions: list[Action] = Field(
        default_factory=list,
        description="An llm step's proposed actions; a data step's action descriptors.",
    )
    credits: int = Field(default=0, description="Credits this step spent (settled).")
    error: str | None = None


ServerFrame = (
    DemoModeFrame | TokenFrame | DoneFrame | PingFrame | ErrorFrame | PlanRunFrame | PlanStepFrame
)
