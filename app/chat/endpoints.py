"""HTTP surface of the chat domain: /chat, /chat/stream, /plans/playbook, /agents."""

from __future__ import annotations

from fastapi import Request, Response, WebSocket

from app.chat import service
from app.chat.errors import UPSTREAM_RESPONSES
from app.chat.schemas import AgentInfo, ChatRequest, ChatResponse, ExecutionPlan, Playbook
from app.errors import error_responses
from app.kit.openapi import header_refs, no_credentials
from app.kit.policy import gateway_policy
from app.kit.routing import DomainRouter
from app.kit.units import UnitOfWorkDep

router = DomainRouter()


@router.post(
    "/chat",
    tags=["chat"],
    response_model=ChatResponse | ExecutionPlan,
    summary="Send a chat message to the agents",
    responses={
        200: {
            "description": "The agents' answer, or a plan",
            "headers": header_refs("X-Demo-Mode"),
        },
        **error_responses(400, 401, 402, 403, 422, 429, 503),
        **UPSTREAM_RESPONSES,
    },
)
@gateway_policy(unit_of_work=True, sanitized=True)
async def send_message(
    body: ChatRequest, unit: UnitOfWorkDep, request: Request, response: Response
) -> ChatResponse | ExecutionPlan:
    """Route a message to the agents; `execution_mode=plan` returns an execution plan."""
    state = request.app.state
    body, canned = await service.prepare_request(service.demo_inputs(state), body, unit)
    orchestrator = service.orchestrator_for(
        state.settings, state.tiers, state.chat_plans, unit, canned
    )
    result = await orchestrator.orchestrate(body)
    if isinstance(result, ExecutionPlan):
        await service.issue_plan(state, unit, result)
    if result.demo:
        response.headers["X-Demo-Mode"] = "true"
    return result


@router.websocket("/chat/stream")
@gateway_policy(unit_of_work=True)
async def chat_stream(websocket: WebSocket) -> None:
    """`?token=` (an access token) is read by the gateway, like the Authorization header.

    The protocol is the AsyncAPI document at /asyncapi.json (`app/chat/asyncapi.py`).
    """
    state = websocket.app.state
    session = service.ChatStreamSession(
        websocket,
        settings=state.settings,
        tiers=state.tiers,
        plans=state.chat_plans,
        shutdown=state.shutdown,
    )
    await session.run()


@router.get(
    "/plans/playbook",
    tags=["plans"],
    response_model=list[Playbook],
    summary="List the built-in playbooks",
    openapi_extra=no_credentials(),
)
async def list_playbooks(request: Request) -> list[Playbook]:
    """The built-in playbooks (template ids only)."""
    return request.app.state.chat_plans.list_playbooks()


@router.get(
    "/plans/playbook/{playbook_id}",
    tags=["plans"],
    response_model=Playbook,
    summary="Get a playbook",
    responses=error_responses(404),
    openapi_extra=no_credentials(),
)
async def get_playbook(playbook_id: str, request: Request) -> Playbook:
    """One playbook by id."""
    return request.app.state.chat_plans.get_playbook(playbook_id)


@router.get(
    "/agents",
    tags=["agents"],
    response_model=list[AgentInfo],
    summary="List the agents and their tools",
    openapi_extra=no_credentials(),
)
async def list_agents(request: Request) -> list[AgentInfo]:
    """The agents with their tools (JSON input schemas), examples and tags."""
    return service.list_agent_infos(request.app.state.tiers)


@router.get(
    "/agents/{name}",
    tags=["agents"],
    response_model=AgentInfo,
    summary="Get an agent",
    responses=error_responses(404),
    openapi_extra=no_credentials(),
)
async def get_agent(name: str, request: Request) -> AgentInfo:
    """One agent's metadata."""
    return service.get_agent_info(name, request.app.state.tiers)
