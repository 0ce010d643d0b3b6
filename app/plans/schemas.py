"""Requests and answers of the plan-run routes, and the WebSocket frame that starts a run."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.chat.schemas import Action, ChatContext, RunStatusName, StepStatusName


class PlanRunRequest(BaseModel):
    """What a run works on: the plan's inputs and the client's data (never stored)."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "The values of the plan's `$input.…` references (see the playbook's steps), "
            "and optionally `message`: the user's words for the run."
        ),
        examples=[{"project_id": "p1", "message": "add a task to write the launch post"}],
    )
    context: ChatContext | None = Field(
        default=None, description="The client's local data, as for chat; nothing is stored."
    )


class RunPlanFrame(PlanRunRequest):
    """Instead of a `ChatRequest`: run a plan (`plan_id`) or a playbook (`playbook_id`)
    and stream its progress on this socket."""

    type: Literal["run_plan"]
    plan_id: str | None = Field(default=None, max_length=64)
    playbook_id: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _one_plan(self) -> RunPlanFrame:
        if (self.plan_id is None) == (self.playbook_id is None):
            raise ValueError("name exactly one of plan_id and playbook_id")
        return self


class StepOutput(BaseModel):
    text: str | None = Field(default=None, description="An llm step's answer text.")
    actions: list[Action] = Field(default_factory=list)


class StepState(BaseModel):
    id: str
    kind: Literal["llm", "data", "agent"]
    agent: str | None = None
    template_id: str | None = None
    action: str | None = None
    status: StepStatusName
    credits: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    output: StepOutput | None = Field(
        default=None,
        description="What the step produced; null while it runs, or once outputs expired.",
    )


class PlanRunStatus(BaseModel):
    run_id: str
    plan_id: str | None
    playbook: str | None
    status: RunStatusName
    demo: bool = Field(description="The run's model calls went to the offline demo model.")
    credits_spent: int
    error: str | None = Field(default=None, description="Why a failed run failed (error code).")
    steps: list[StepState]
    actions: list[Action] | None = Field(
        default=None,
        description="The run's action descriptors (its data steps'), once outputs are here.",
    )
    outputs: Literal["available", "expired", "elsewhere"] = Field(
        description=(
            "Step outputs live in the memory of the worker that ran the run, for "
            "PLAN_RUN_OUTPUT_TTL_SECONDS: `elsewhere` when this request reached another "
            "worker (poll again, or follow the run on the WebSocket), `expired` after that."
        )
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
