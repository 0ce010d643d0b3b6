"""Plan runs on the chat WebSocket: `run_plan` first frame, `plan_step` frames, then done."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from jsonschema import Draft202012Validator

from app.models import BillingTier
from tests.chat.conftest import ROOMY_QUOTAS
from tests.chat.support import ws_client
from tests.plans.support import CONTEXT, PROJECT_RUN, account_on, wait_for_end
from tests.support.builders import register

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(ROOMY_QUOTAS)


async def _server_frames(client) -> dict[str, Draft202012Validator]:
    document = (await client.get("/asyncapi.json")).json()
    messages = document["components"]["messages"]
    names = [r["$ref"].rsplit("/", 1)[-1] for r in document["operations"]["sendAnswer"]["messages"]]
    return {
        name: Draft202012Validator(
            {**messages[name]["payload"], "components": document["components"]}
        )
        for name in names
    }


def _kind(frame: dict[str, Any], validators: dict[str, Draft202012Validator]) -> str:
    matches = [name for name, v in validators.items() if v.is_valid(frame)]
    assert len(matches) == 1, f"{frame} matches {matches}"
    return matches[0]


async def test_a_playbook_streams_plan_steps_then_done(app: FastAPI, client) -> None:
    validators = await _server_frames(client)
    document = (await client.get("/asyncapi.json")).json()
    run_plan = document["components"]["messages"]["runPlan"]["payload"]
    request = {"type": "run_plan", "playbook_id": "create_tasks_from_project", **PROJECT_RUN}
    assert Draft202012Validator({**run_plan, "components": document["components"]}).is_valid(
        request
    )
    account = await account_on(client, app, BillingTier.POWER)
    frames = []
    async with (
        ws_client(app) as wc,
        aconnect_ws(f"/api/v1/chat/stream?token={account.access_token}", wc) as ws,
    ):
        await ws.send_json(request)
        while True:
            frame = await ws.receive_json(timeout=10)
            frames.append(frame)
            if frame.get("done") or frame.get("error"):
                break
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json(timeout=10)
    assert closed.value.code == 1000
    kinds = [_kind(frame, validators) for frame in frames]
    assert kinds == ["planRun"] + ["planStep"] * 4 + ["done"], frames
    started, *steps, done = frames
    run_id = started["plan_run"]
    assert started["steps"] == ["step_1", "step_2"] and started["playbook"]
    assert [(s["plan_step"], s["status"]) for s in steps] == [
        ("step_1", "running"),
        ("step_1", "succeeded"),
        ("step_2", "running"),
        ("step_2", "succeeded"),
    ]
    assert {s["run_id"] for s in steps} == {run_id}
    assert steps[1]["text"] and steps[1]["actions"][0]["data"]["title"] == "Call Anna"
    [action] = done["actions"]
    assert steps[3]["actions"] == [action] and action["table"] == "tasks"
    # The same run, polled.
    polled = await wait_for_end(client, account, run_id)
    assert polled["status"] == "succeeded" and polled["actions"] == [action]


async def test_refusals_arrive_as_error_frames(app: FastAPI, client) -> None:
    free = await register(client)
    cases = [
        ({"type": "run_plan", "plan_id": "0123abcd", "inputs": {}}, "feature_not_available", 4403),
        (
            {"type": "run_plan", "playbook_id": "generate_weekly_note", "context": CONTEXT},
            "validation_error",
            4422,
        ),
        ({"type": "run_plan", "playbook_id": "nope"}, "playbook_not_found", 4404),
        ({"type": "run_plan"}, "invalid_frame", 1007),
    ]
    async with ws_client(app) as wc:
        for request, error, code in cases:
            async with aconnect_ws(f"/api/v1/chat/stream?token={free.access_token}", wc) as ws:
                await ws.send_json(request)
                frame = await ws.receive_json(timeout=10)
                assert frame["error"] == error and frame["request_id"], frame
                with pytest.raises(WebSocketDisconnect) as closed:
                    await ws.receive_json(timeout=10)
            assert closed.value.code == code
        # Runs are for accounts: an anonymous socket is told to sign in.
        async with aconnect_ws("/api/v1/chat/stream", wc) as ws:
            await ws.send_json({"type": "run_plan", "playbook_id": "nope"})
            frame = await ws.receive_json(timeout=10)
            assert frame["error"] == "not_authenticated"


async def test_a_chat_message_that_mentions_run_plan_is_chat(app: FastAPI, client) -> None:
    account = await register(client)
    async with (
        ws_client(app) as wc,
        aconnect_ws(f"/api/v1/chat/stream?token={account.access_token}", wc) as ws,
    ):
        await ws.send_json({"message": "what does the run_plan frame type do?"})
        while True:
            frame = await ws.receive_json(timeout=10)
            assert "error" not in frame, frame
            if frame.get("done"):
                break
