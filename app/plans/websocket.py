"""Plan runs on the chat WebSocket: a `run_plan` first frame starts a run and streams it.

Instead of a `ChatRequest`, the first frame may be `{"type": "run_plan", "plan_id": …}`
or `{"type": "run_plan", "playbook_id": …}` with `inputs` and `context`. The server
answers with a `plan_run` frame (the run's id), a `plan_step` frame as each step
starts and ends (an ended step with its output), pings while it runs, and last a
`done` frame with the run's action descriptors (close 1000) — or an error frame: the
run's refusal (4000 + status), failure (its error code; 4000 + status), cancellation
(`run_cancelled`, close 1000) or the server stopping (`server_shutting_down`, 1012).
Closing the socket does not cancel the run: it is a batch job; poll it, or DELETE it.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import TYPE_CHECKING

import anyio
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from app.chat.schemas import DoneFrame, ErrorFrame, PingFrame, PlanRunFrame
from app.errors import AppError
from app.kit.byok import LLM_KEY
from app.kit.units import IDENTITY
from app.log import current_request_id
from app.plans.runner import run_actions
from app.plans.schemas import RunPlanFrame
from app.plans.service import account_of

if TYPE_CHECKING:
    from app.chat.service import ChatStreamSession
    from app.plans.service import LiveRun, PlanRuns

WS_INVALID_PAYLOAD = 1007
_MARKER = "run_plan"


def is_run_frame(raw: str | bytes | None) -> bool:
    """A first frame whose `type` is `run_plan` (a chat message may mention the words)."""
    if raw is None or (_MARKER.encode() if isinstance(raw, bytes) else _MARKER) not in raw:
        return False  # the usual chat request: not parsed twice
    try:
        frame = json.loads(raw)
    except ValueError:
        return False
    return isinstance(frame, dict) and frame.get("type") == _MARKER


def _error(error: str, message: str) -> ErrorFrame:
    return ErrorFrame(error=error, message=message, request_id=current_request_id())


async def serve_run(runs: PlanRuns, session: ChatStreamSession, raw: str | bytes) -> None:
    try:
        frame = RunPlanFrame.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "frame"
        await session._send(
            _error("invalid_frame", f"Invalid run_plan frame ({where}: {first.get('msg')}).")
        )
        await session._close(WS_INVALID_PAYLOAD, "invalid run_plan")
        return
    state = session.ws.scope.get("state", {})
    try:
        identity = account_of(state.get(IDENTITY))
        if frame.plan_id is not None:
            plan = await runs.issued_plan(frame.plan_id, identity)
        else:
            plan = runs.plans.playbook_plan(frame.playbook_id or "")
        live = await runs.start(
            identity,
            state.get(LLM_KEY),
            state.get("request_id"),
            plan,
            frame.inputs,
            frame.context,
            plan_id=frame.plan_id,
        )
    except AppError as exc:
        await session._refuse(exc)
        return
    await _stream(session, live)


async def _stream(session: ChatStreamSession, live: LiveRun) -> None:
    await session._send(
        PlanRunFrame(
            plan_run=live.run_id,
            plan_id=live.plan.plan_id if live.plan.playbook is None else None,
            playbook=live.plan.playbook,
            steps=[step.id for step in live.plan.steps],
            demo=live.demo,
        )
    )
    gone = False
    async with anyio.create_task_group() as group:

        async def follow() -> None:
            nonlocal gone
            try:
                async for frame in live.follow():
                    await session._send(frame)
            except (WebSocketDisconnect, OSError):
                gone = True
            group.cancel_scope.cancel()

        async def ping() -> None:
            nonlocal gone
            try:
                while True:
                    await anyio.sleep(session.settings.WS_PING_INTERVAL_SECONDS)
                    await session._send(PingFrame(ping=True))
            except (WebSocketDisconnect, OSError):
                gone = True
                group.cancel_scope.cancel()

        async def listen() -> None:
            nonlocal gone
            while True:
                message = await session.ws.receive()
                if message["type"] == "websocket.disconnect":
                    gone = True
                    group.cancel_scope.cancel()
                    return

        group.start_soon(follow)
        group.start_soon(ping)
        group.start_soon(listen)
    if gone:
        return  # the run goes on without a watcher
    with suppress(WebSocketDisconnect, OSError, RuntimeError):
        if live.status == "succeeded":
            await session._send(
                DoneFrame(
                    done=True,
                    response="",
                    actions=run_actions(live.plan, live.outputs),
                    agent=live.plan.agent,
                    demo=live.demo,
                )
            )
            await session._close(1000, "done")
        elif live.status == "cancelled":
            await session._send(_error("run_cancelled", "The run was cancelled."))
            await session._close(1000, "cancelled")
        elif live.error == "server_shutting_down":
            await session._say_goodbye()
        else:
            await session._send(
                _error(live.error or "run_failed", f"The run failed ({live.error}).")
            )
            await session._close(4000 + (live.error_status or 500), live.error or "run_failed")
