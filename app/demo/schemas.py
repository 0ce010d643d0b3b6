from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from app.demo.workspace import WorkspaceAction, WorkspaceSummary
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
    actions: list[WorkspaceAction] = Field(min_length=1, max_length=50)


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
