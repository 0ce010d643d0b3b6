from __future__ import annotations

from fastapi import status

from app.auth.dependencies import AdminUser
from app.demo.dependencies import (
    CurrentDemoSession,
    DemoServiceDep,
    ExampleServiceDep,
    PathDemoSession,
    SessionCreationAllowed,
)
from app.demo.schemas import (
    CreateDemoSession,
    DemoAccounts,
    DemoExampleOut,
    DemoSessionCreated,
    DemoSessionExtended,
    DemoSessionInfo,
    DemoStats,
    ExamplesInitResult,
    ExamplesInitStatus,
    WorkspaceActions,
)
from app.demo.workspace import Workspace
from app.errors import error_responses
from app.kit.openapi import no_credentials
from app.kit.policy import gateway_policy
from app.kit.routing import DomainRouter
from app.kit.units import UnitOfWorkDep

router = DomainRouter(prefix="/demo", tags=["demo"])

# The session id in the path is the credential; a session token or `X-Demo-Session-Id`
# sent along must name the same session (403 otherwise).
SESSION_IN_PATH = no_credentials()


@router.get(
    "/accounts",
    response_model=DemoAccounts,
    summary="List the sample workspaces",
    openapi_extra=no_credentials(),
)
async def list_accounts(service: DemoServiceDep) -> DemoAccounts:
    """The template workspaces a demo session can start from, with what is in them."""
    return service.accounts()


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=DemoSessionCreated,
    summary="Start a demo session",
    responses=error_responses(422, 429),
    openapi_extra=no_credentials(),
    dependencies=[SessionCreationAllowed],
)
async def create_session(body: CreateDemoSession, service: DemoServiceDep) -> DemoSessionCreated:
    """Start a demo session: a fresh virtual tenant with its own copy of the template."""
    return await service.create(body.demo_account_type)


@router.get(
    "/sessions/current",
    response_model=DemoSessionInfo,
    summary="Get the caller's demo session",
    responses=error_responses(401, 410),
)
async def current_session(row: CurrentDemoSession, service: DemoServiceDep) -> DemoSessionInfo:
    """The session named by the caller's session token or `X-Demo-Session-Id` header."""
    return service.info(row)


@router.get(
    "/sessions/{session_id}",
    response_model=DemoSessionInfo,
    summary="Get a demo session",
    responses=error_responses(401, 403, 404, 410),
    openapi_extra=SESSION_IN_PATH,
)
async def get_session(row: PathDemoSession, service: DemoServiceDep) -> DemoSessionInfo:
    """Status, expiry, extensions left and a summary of the session's workspace."""
    return service.info(row)


@router.post(
    "/sessions/{session_id}/extend",
    response_model=DemoSessionExtended,
    summary="Extend a demo session",
    responses=error_responses(401, 403, 404, 409, 410),
    openapi_extra=SESSION_IN_PATH,
)
async def extend_session(row: PathDemoSession, service: DemoServiceDep) -> DemoSessionExtended:
    """Add one session length (30 minutes by default) to the expiry, at most 3 times."""
    return await service.extend(row)


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End a demo session",
    responses=error_responses(401, 403, 404, 410),
    openapi_extra=SESSION_IN_PATH,
)
async def delete_session(row: PathDemoSession, service: DemoServiceDep) -> None:
    """End the session now; its tenant and data are purged by the next cleanup pass."""
    await service.end(row)


@router.get(
    "/sessions/{session_id}/workspace",
    response_model=Workspace,
    summary="Get a demo session's workspace",
    responses=error_responses(401, 403, 404, 410),
    openapi_extra=SESSION_IN_PATH,
)
async def get_workspace(row: PathDemoSession, service: DemoServiceDep) -> Workspace:
    """The session's own workspace: projects, tasks, checkpoints and notes."""
    return service.workspace(row)


@router.post(
    "/sessions/{session_id}/workspace/actions",
    response_model=Workspace,
    summary="Apply agent actions to a demo session's workspace",
    responses=error_responses(401, 403, 404, 409, 410, 422),
    openapi_extra=SESSION_IN_PATH,
)
async def apply_workspace_actions(
    body: WorkspaceActions, row: PathDemoSession, service: DemoServiceDep
) -> Workspace:
    """Apply agent actions (create/update/delete_record) to this session's workspace only."""
    return await service.apply(row, body.actions)


@router.get(
    "/stats",
    response_model=DemoStats,
    summary="Demo session statistics (admin)",
    responses=error_responses(401, 403),
)
async def stats(_: AdminUser, service: DemoServiceDep) -> DemoStats:
    """Demo sessions by status, created today, and their average length (admins only)."""
    return await service.stats()


@router.get(
    "/examples/init-status",
    response_model=ExamplesInitStatus,
    summary="Which agents have a stored demo example",
    openapi_extra=no_credentials(),
)
async def examples_init_status(service: ExampleServiceDep) -> ExamplesInitStatus:
    """Which agents have a stored demo example and which are missing."""
    return await service.status()


@router.post(
    "/examples/init",
    response_model=ExamplesInitResult,
    summary="Generate the missing demo examples",
    responses=error_responses(401, 429, 503),
)
@gateway_policy(unit_of_work=True)
async def init_examples(_: UnitOfWorkDep, service: ExampleServiceDep) -> ExamplesInitResult:
    """Generate one example conversation per agent that has none (offline demo model).

    Idempotent: agents that already have an example are skipped. A unit of work:
    counted by the quota gate like a chat request.
    """
    return await service.init()


@router.get(
    "/examples",
    response_model=list[DemoExampleOut],
    summary="List the stored demo examples",
    openapi_extra=no_credentials(),
)
async def list_examples(service: ExampleServiceDep) -> list[DemoExampleOut]:
    """The stored demo examples: each agent's conversation and its canned fallback answer."""
    return await service.list()
