"""HTTP surface of plan runs: start a plan or playbook, poll a run, cancel it."""

from __future__ import annotations

from fastapi import Request, Response, status

from app.chat.schemas import ExecutionPlan
from app.errors import error_responses
from app.kit.byok import LLM_KEY
from app.kit.openapi import reads_llm_key
from app.kit.policy import gateway_policy
from app.kit.routing import DomainRouter
from app.kit.units import CallerIdentity
from app.plans.schemas import PlanRunRequest, PlanRunStatus
from app.plans.service import PlanRuns, account_of
from app.work import Identity

router = DomainRouter(tags=["plans"])

_START_ERRORS = error_responses(401, 402, 403, 404, 422, 429, 503)


def runs_of(request: Request) -> PlanRuns:
    return request.app.state.plan_runs


async def _start(
    request: Request,
    response: Response,
    identity: Identity,
    plan: ExecutionPlan,
    body: PlanRunRequest,
    plan_id: str | None,
) -> PlanRunStatus:
    runs = runs_of(request)
    state = request.scope.get("state", {})
    live = await runs.start(
        identity,
        state.get(LLM_KEY),
        state.get("request_id"),
        plan,
        body.inputs,
        body.context,
        plan_id=plan_id,
    )
    response.headers["Location"] = f"/api/v1/plans/runs/{live.run_id}"
    return await runs.status(live.run_id, live.tenant_id)


@router.post(
    "/plans/{plan_id}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PlanRunStatus,
    summary="Run a plan from plan mode",
    responses=_START_ERRORS,
    openapi_extra=reads_llm_key(),
)
@gateway_policy(sanitized=True)
async def run_plan(
    plan_id: str,
    body: PlanRunRequest,
    identity: CallerIdentity,
    request: Request,
    response: Response,
) -> PlanRunStatus:
    """Execute a plan `execution_mode: plan` returned to this workspace (power and team
    tiers), step by step on the server; poll the run or follow it on the WebSocket."""
    identity = account_of(identity)
    plan = await runs_of(request).issued_plan(plan_id, identity)
    return await _start(request, response, identity, plan, body, plan_id)


@router.post(
    "/plans/playbook/{playbook_id}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PlanRunStatus,
    summary="Run a playbook",
    responses=_START_ERRORS,
    openapi_extra=reads_llm_key(),
)
@gateway_policy(sanitized=True)
async def run_playbook(
    playbook_id: str,
    body: PlanRunRequest,
    identity: CallerIdentity,
    request: Request,
    response: Response,
) -> PlanRunStatus:
    """Execute a built-in playbook with its inputs (every tier; counted against the tier's
    batch jobs active)."""
    identity = account_of(identity)
    plan = request.app.state.chat_plans.playbook_plan(playbook_id)
    return await _start(request, response, identity, plan, body, None)


@router.get(
    "/plans/runs/{run_id}",
    response_model=PlanRunStatus,
    summary="Get a plan run",
    responses=error_responses(401, 404),
)
@gateway_policy(sanitized=True)
async def get_run(run_id: str, identity: CallerIdentity, request: Request) -> PlanRunStatus:
    """The run's status, its steps' statuses and credits, and — on the worker that ran it,
    until they expire — the steps' outputs and the run's action descriptors."""
    identity = account_of(identity)
    assert identity.tenant_id is not None
    return await runs_of(request).status(run_id, identity.tenant_id)


@router.delete(
    "/plans/runs/{run_id}",
    response_model=PlanRunStatus,
    summary="Cancel a plan run",
    responses=error_responses(401, 404, 409),
)
@gateway_policy(sanitized=True)
async def cancel_run(run_id: str, identity: CallerIdentity, request: Request) -> PlanRunStatus:
    """Stop the run: between steps, or interrupting the running step. Its batch slot is
    free at once; it is charged for the steps that completed."""
    identity = account_of(identity)
    assert identity.tenant_id is not None
    return await runs_of(request).cancel(run_id, identity.tenant_id)
