"""Chat service: an orchestrator per unit of work, the WebSocket session, agent metadata."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager, suppress
from typing import Any, Protocol

import anyio
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app.billing.tiers import TIER_ORDER, TierTable
from app.chat.agents import ChatAgent, registry
from app.chat.agents.registry import playbook_template_refs
from app.chat.llm import DEMO_CLIENT, ModelCaller, llm_client, router_client
from app.chat.orchestrator import Orchestrator
from app.chat.plans import PlanService
from app.chat.schemas import (
    AgentInfo,
    ChatContext,
    ChatRequest,
    DemoModeFrame,
    DoneFrame,
    ErrorFrame,
    ExecutionPlan,
    PingFrame,
    ServerFrame,
    ToolInfo,
)
from app.config import Settings
from app.errors import AppError
from app.kit.units import UNIT_ADMISSION
from app.log import current_request_id
from app.models import BillingTier
from app.plans.websocket import is_run_frame, serve_run
from app.shutdown import WS_SERVICE_RESTART, GracefulShutdown
from app.work import UnitAdmission, UnitOfWork

log = logging.getLogger(__name__)

# WebSocket close codes: RFC 6455 ones, and 4000 + the HTTP status for refusals
# after the stream started (4403 agent not in tier, 4402 credits, 4502/4504 upstream).
WS_POLICY_VIOLATION = 1008
WS_INVALID_PAYLOAD = 1007
WS_TOO_BIG = 1009
WS_REQUEST_TIMEOUT = 4408


@asynccontextmanager
async def chat_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    app.state.chat_plans = PlanService()
    # The agents' declarations fit together and with the playbooks, or the server stops.
    registry.check(playbook_template_refs(app.state.chat_plans.list_playbooks()))
    yield


def demo_orchestrator(
    tiers: TierTable,
    plans: PlanService,
    tier: BillingTier,
    *,
    demo: bool = True,
    canned: Mapping[str, str] | None = None,
) -> Orchestrator:
    """The orchestrator over the offline demo model: no network, no credits."""
    model = ModelCaller(DEMO_CLIENT, None)
    return Orchestrator(
        llm=model,
        router=model,
        registry=registry,
        tiers=tiers,
        tier=tier,
        plans=plans,
        demo=demo,
        canned=canned,
    )


def orchestrator_for(
    settings: Settings,
    tiers: TierTable,
    plans: PlanService,
    unit: UnitOfWork,
    canned: Mapping[str, str] | None = None,
) -> Orchestrator:
    """The orchestrator this unit of work may use: the LLM it was granted, or the demo model.

    In the demo fallback, `canned` (agent → the stored example's answer) answers the
    messages the demo model cannot act on.
    """
    if not unit.llm.use_llm:
        return demo_orchestrator(tiers, plans, unit.tier, canned=canned)
    llm = ModelCaller(llm_client(settings, unit.llm), unit)
    same_model = (settings.LLM_ROUTER_MODEL or settings.LLM_MODEL) == settings.LLM_MODEL
    return Orchestrator(
        llm=llm,
        # One client for both when the router is the same model (a BYOK key's is built
        # per request).
        router=llm if same_model else ModelCaller(router_client(settings, unit.llm), unit),
        registry=registry,
        tiers=tiers,
        tier=unit.tier,
        plans=plans,
    )


class DemoInputs(Protocol):
    """What chat takes from the demo domain (`app/demo/chat_inputs.py` provides it)."""

    async def session_context(self, session_id: str) -> ChatContext | None:
        """A demo session's workspace as chat context; None when the session is gone."""
        ...

    async def canned_answers(self) -> dict[str, str]:
        """Agent → the demo fallback's stored answer."""
        ...


def demo_inputs(state: Any) -> DemoInputs:
    return state.demo_chat_inputs


async def prepare_request(
    inputs: DemoInputs, request: ChatRequest, unit: UnitOfWork
) -> tuple[ChatRequest, dict[str, str] | None]:
    """The request as the orchestrator should see it, and the fallback's canned answers.

    Inside a demo session, a request without a client `context` works on the
    session's workspace. In the demo fallback, the stored demo examples are loaded.
    """
    if request.context is None and unit.demo_session_id is not None:
        context = await inputs.session_context(unit.demo_session_id)
        if context is not None:
            request = request.model_copy(update={"context": context})
    canned = None if unit.llm.use_llm else await inputs.canned_answers()
    return request, canned


async def issue_plan(state: Any, unit: UnitOfWork, plan: ExecutionPlan) -> None:
    """Bind a plan returned in plan mode to the caller's workspace, so it can be run."""
    runs = getattr(state, "plan_runs", None)
    if runs is not None and unit.tenant_id is not None:
        await runs.issue(plan, unit.tenant_id)


# --- agents metadata ------------------------------------------------------------------
def agent_info(agent: ChatAgent, tiers: TierTable) -> AgentInfo:
    return AgentInfo(
        id=agent.name,
        name=agent.title,
        description=agent.description,
        tools=[
            ToolInfo(name=t.name, description=t.description, input_schema=t.input_schema())
            for t in agent.tools
        ],
        examples=list(agent.examples),
        tags=list(agent.tags),
        tiers=[str(t) for t in TIER_ORDER if agent.name in tiers[t].agents],
    )


def list_agent_infos(tiers: TierTable) -> list[AgentInfo]:
    return [agent_info(a, tiers) for a in registry.list_agents()]


def get_agent_info(name: str, tiers: TierTable) -> AgentInfo:
    return agent_info(registry.get(name), tiers)


# --- WebSocket ------------------------------------------------------------------------
def _error_frame(error: str, message: str) -> ErrorFrame:
    return ErrorFrame(error=error, message=message, request_id=current_request_id())


class ChatStreamSession:
    """One `/chat/stream` connection: first frame, token frames, pings, the done frame."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        settings: Settings,
        tiers: TierTable,
        plans: PlanService,
        shutdown: GracefulShutdown | None = None,
    ) -> None:
        self.ws = websocket
        self.settings = settings
        self.tiers = tiers
        self.plans = plans
        self.shutdown = shutdown
        self._send_lock = anyio.Lock()

    async def _close(self, code: int, reason: str = "") -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            # The client may already be gone; then there is nothing to close.
            with suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(code, reason)

    async def _send(self, frame: ServerFrame) -> None:
        async with self._send_lock:
            await self.ws.send_json(frame.wire())

    def _frame_size(self, message: dict[str, Any]) -> tuple[str | bytes | None, int]:
        if message.get("text") is not None:
            return message["text"], len(message["text"].encode())
        if message.get("bytes") is not None:
            return message["bytes"], len(message["bytes"])
        return None, 0

    async def _say_goodbye(self) -> None:
        """The server is stopping: a last frame the client can act on, then 1012."""
        with suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._send(
                _error_frame(
                    "server_shutting_down",
                    "The server is restarting; reconnect and send the message again.",
                )
            )
        await self._close(WS_SERVICE_RESTART, "server shutting down")

    async def _receive_first(self) -> dict[str, Any] | None:
        """The client's first frame; None if the server starts stopping first.

        A client that sends nothing within WS_FIRST_FRAME_TIMEOUT_SECONDS gets a
        timeout frame instead (`{"type": "timeout"}`), so an idle socket cannot stay.
        """
        received: dict[str, Any] | None = {"type": "timeout"}
        async with anyio.create_task_group() as group:

            async def receive() -> None:
                nonlocal received
                with anyio.move_on_after(self.settings.WS_FIRST_FRAME_TIMEOUT_SECONDS):
                    received = await self.ws.receive()
                group.cancel_scope.cancel()

            async def stop_on_shutdown(shutdown: GracefulShutdown) -> None:
                nonlocal received
                await shutdown.wait()
                received = None
                group.cancel_scope.cancel()

            group.start_soon(receive)
            if self.shutdown is not None:
                group.start_soon(stop_on_shutdown, self.shutdown)
        return received

    async def run(self) -> None:
        if self.shutdown is None:
            await self._run()
            return
        # Counted for the session's whole life, so a draining server waits for it too.
        with self.shutdown.stream():
            await self._run()

    async def _run(self) -> None:
        admission: UnitAdmission | None = self.ws.scope.get("state", {}).get(UNIT_ADMISSION)
        await self.ws.accept()
        if admission is None:
            # The gate offers no unit for credentials that did not verify (an expired or
            # revoked token, an unknown demo session).
            await self._close(WS_POLICY_VIOLATION, "invalid or expired credentials")
            return
        message = await self._receive_first()
        if message is None:
            await self._say_goodbye()
            return
        if message["type"] == "websocket.disconnect":
            return
        if message["type"] == "timeout":
            await self._send(
                _error_frame(
                    "request_timeout",
                    "No chat request arrived within "
                    f"{self.settings.WS_FIRST_FRAME_TIMEOUT_SECONDS:g} s of connecting.",
                )
            )
            await self._close(WS_REQUEST_TIMEOUT, "no request")
            return
        raw, size = self._frame_size(message)
        if size > self.settings.WS_MAX_FRAME_BYTES:
            await self._close(WS_TOO_BIG, "frame too large")
            return
        runs = getattr(self.ws.app.state, "plan_runs", None)
        if runs is not None and is_run_frame(raw):
            # A plan run instead of a chat request: admitted as a run, not as this unit.
            await serve_run(runs, self, raw or b"")
            return
        try:
            request = ChatRequest.model_validate_json(raw or b"")
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ())) or "frame"
            await self._send(
                _error_frame(
                    "invalid_frame",
                    f"The first frame must be a ChatRequest JSON object ({where}: "
                    f"{first.get('msg', 'invalid')}).",
                )
            )
            await self._close(WS_INVALID_PAYLOAD, "invalid ChatRequest")
            return
        # The unit of work starts here: quotas and slots are taken now, not at the handshake.
        try:
            unit = await admission.admit()
        except AppError as exc:
            await self._refuse(exc)
            return
        await self._serve(request, unit, admission)

    async def _refuse(self, exc: AppError) -> None:
        with suppress(WebSocketDisconnect, OSError):
            await self._send(_error_frame(exc.error, exc.message))
        await self._close(4000 + exc.status_code, exc.error)

    async def _serve(
        self, request: ChatRequest, unit: UnitOfWork, admission: UnitAdmission
    ) -> None:
        try:
            request, canned = await prepare_request(demo_inputs(self.ws.app.state), request, unit)
        except AppError as exc:
            await self._refuse(exc)
            return
        orchestrator = orchestrator_for(self.settings, self.tiers, self.plans, unit, canned)
        if not unit.llm.use_llm:
            # What `X-Demo-Mode: true` says over REST: the answer comes from the demo fallback.
            await self._send(DemoModeFrame(demo=True))
        close_code, reason = 1000, "done"
        finished = stopped = False
        async with anyio.create_task_group() as group:

            async def produce() -> None:
                nonlocal close_code, reason, finished
                try:
                    async with aclosing(orchestrator.orchestrate_stream(request)) as frames:
                        async for frame in frames:
                            if isinstance(frame, DoneFrame) and frame.plan is not None:
                                await issue_plan(self.ws.app.state, unit, frame.plan)
                            if isinstance(frame, DoneFrame):
                                # The unit is complete: its slot is free before the client
                                # reads the last frame and perhaps reconnects at once.
                                finished = True
                                await admission.finish(1000)
                            await self._send(frame)
                except AppError as exc:
                    close_code, reason = 4000 + exc.status_code, exc.error
                    with suppress(WebSocketDisconnect, OSError):
                        await self._send(_error_frame(exc.error, exc.message))
                except (WebSocketDisconnect, OSError):
                    close_code = 0  # the client is gone: nothing left to close
                group.cancel_scope.cancel()

            async def ping() -> None:
                nonlocal close_code
                try:
                    while True:
                        await anyio.sleep(self.settings.WS_PING_INTERVAL_SECONDS)
                        await self._send(PingFrame(ping=True))
                except (WebSocketDisconnect, OSError):
                    close_code = 0
                    group.cancel_scope.cancel()

            async def listen() -> None:
                nonlocal close_code, reason
                while True:
                    message = await self.ws.receive()
                    if message["type"] == "websocket.disconnect":
                        close_code = 0
                        break
                    if self._frame_size(message)[1] > self.settings.WS_MAX_FRAME_BYTES:
                        close_code, reason = WS_TOO_BIG, "frame too large"
                        break
                # Stops the stream, which settles the credit meter for what was used.
                group.cancel_scope.cancel()

            async def stop_on_shutdown(shutdown: GracefulShutdown) -> None:
                nonlocal stopped
                await shutdown.wait()
                if close_code == 1000 and not finished:
                    # Cancelling the producer stops the model call and settles its credits.
                    stopped = True
                    group.cancel_scope.cancel()

            group.start_soon(produce)
            group.start_soon(ping)
            group.start_soon(listen)
            if self.shutdown is not None:
                group.start_soon(stop_on_shutdown, self.shutdown)
        if stopped:
            await self._say_goodbye()
        elif close_code:
            await self._close(close_code, reason)
