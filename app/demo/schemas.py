from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.chat.schemas import Action
from app.demo.workspace import WorkspaceSummary
from app.models import DemoSessionStatus


class SampleProject(BaseModel):
    id: str
    name: str
    description: str
    status: str
    tasks: int
    open_tasks: int
    checkpoints: int
    notes: int


class DemoAccount(BaseModel):
    demo_account_type: str = Field(examples=["freelancer"])
    name: str
    description: str
    persona: str = Field(examples=["Mara Lindqvist, Freelance brand & web designer"])
    summary: WorkspaceSummary
    projects: list[SampleProject]
    sample_tasks: list[str] = Field(description="A few task titles, most urgent first.")
    sample_checkpoints: list[str]
    sample_notes: list[str]


class DemoAccounts(BaseModel):
    accounts: list[DemoAccount]
    session_minutes: int
    max_extensions: int


class CreateDemoSession(BaseModel):
    demo_account_type: str = Field(
        min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$", examples=["freelancer"]
    )


class DemoSessionCreated(BaseModel):
    session_id: str
    virtual_tenant_id: uuid.UUID
    demo_account_type: str
    expires_at: datetime
    session_token: str = Field(
        description="A bearer token for this session (type `demo`); expires with it."
    )


class DemoSessionInfo(BaseModel):
    session_id: str
    virtual_tenant_id: uuid.UUID
    demo_account_type: str
    status: DemoSessionStatus
    created_at: datetime
    expires_at: datetime
    seconds_left: int
    extensions_used: int
    extensions_left: int
    workspace: WorkspaceSummary


class DemoSessionExtended(BaseModel):
    session_id: str
    expires_at: datetime
    extensions_used: int
    extensions_left: int
    session_token: str = Field(description="A fresh session token carrying the new expiry.")


class WorkspaceActions(BaseModel):
    actions: list[Action] = Field(
        min_length=1,
        max_length=50,
        description="Actions as a chat answer carries them, applied in order.",
    )


class DemoStats(BaseModel):
    sessions_by_status: dict[str, int] = Field(
        description="Sessions on record by status; purged sessions are no longer counted."
    )
    total: int
    created_today: int = Field(description="Sessions created since 00:00 UTC.")
    average_length_seconds: float | None = Field(
        description="Mean of (end, or expiry, or now if earlier) minus start, "
        "over sessions on record."
    )


class ExamplesInitStatus(BaseModel):
    can_init: bool = Field(description="True while some agent has no stored example yet.")
    total_agents: int
    agents_with_examples: list[str]
    missing: list[str] = Field(description="Agents without a stored example.")


class ExamplesInitResult(ExamplesInitStatus):
    created: list[str] = Field(description="Agents whose example this call stored.")
    skipped: list[str] = Field(
        description="Agents that already had an example (stored earlier, or by a concurrent init)."
    )


class ExampleTurn(BaseModel):
    message: str
    response: str
    actions: list[dict[str, Any]]


class DemoExampleOut(BaseModel):
    agent: str
    messages: list[str] = Field(description="The agent's metadata examples, sent in order.")
    context: dict[str, Any] = Field(description="The fixed sample workspace the run started from.")
    turns: list[ExampleTurn]
    canned_answer: str = Field(description="What the demo fallback answers for this agent.")
    created_at: datetime
