"""The WebSocket chat protocol as an AsyncAPI 3.0 document, served at `/asyncapi.json`.

The payload schemas are generated from the Pydantic models the server reads and
sends frames with (`ChatRequest` in, the frames of `app/chat/schemas.py` out), so
the document cannot drift from the wire. It describes the server: it *receives*
the client's request frame and *sends* the answer's frames.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from app import __version__
from app.chat.schemas import (
    ChatRequest,
    DemoModeFrame,
    DoneFrame,
    ErrorFrame,
    PingFrame,
    PlanRunFrame,
    PlanStepFrame,
    TokenFrame,
)
from app.config import Settings
from app.plans.schemas import RunPlanFrame

CHANNEL = "chatStream"
ADDRESS = "/api/v1/chat/stream"

# message name → (model, summary); the server's frames in the order they come.
CLIENT_MESSAGES: dict[str, tuple[type[BaseModel], str]] = {
    "chatRequest": (
        ChatRequest,
        "The one request of a connection, sent first: the same body as POST /api/v1/chat.",
    ),
    "runPlan": (
        RunPlanFrame,
        "Instead of a chat request, sent first: run a plan or playbook and stream its "
        "progress (the body of POST /api/v1/plans/…/runs, with `type` and the plan's id).",
    ),
}
SERVER_MESSAGES: dict[str, tuple[type[BaseModel], str]] = {
    "demoMode": (DemoModeFrame, "The answer comes from the offline demo model."),
    "token": (TokenFrame, "A piece of the answer's text."),
    "done": (DoneFrame, "The whole answer and its actions; the server then closes with 1000."),
    "ping": (PingFrame, "Keep-alive while the answer is under way."),
    "planRun": (PlanRunFrame, "After `runPlan`: the run started; its id and its steps."),
    "planStep": (
        PlanStepFrame,
        "A step of the run started or ended (an ended step with its output); after the "
        "last one, `done` with the run's action descriptors.",
    ),
    "error": (ErrorFrame, "A refusal or failure; the close code follows."),
}

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "accessTokenQuery": {
        "type": "httpApiKey",
        "in": "query",
        "name": "token",
        "description": "An access token (POST /api/v1/auth/login) or a demo session token.",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The same tokens in an `Authorization` header (non-browser clients).",
    },
    "demoSessionId": {
        "type": "httpApiKey",
        "in": "header",
        "name": "X-Demo-Session-Id",
        "description": "A demo session's id (non-browser clients).",
    },
}

CLOSE_CODES = """| Close code | When |
|---|---|
| 1000 | after the `done` frame, or a `run_cancelled` error frame (a cancelled plan run) |
| 1007 | after an `invalid_frame` error frame: the first frame is not a valid `ChatRequest` |
| 1008 | invalid or expired credentials |
| 1009 | a frame over `WS_MAX_FRAME_BYTES` ({max_frame} bytes) |
| 1012 | after a `server_shutting_down` error frame: reconnect and send the message again |
| 4408 | after a `request_timeout` error frame: no request within {timeout:g} s |
| 4000 + HTTP status | after an error frame: a refusal or failure (4429 quota, 4503, \
4403 agent or plan mode not in the tier, 4402 credits, 4502/4504 upstream; for a plan \
run also 4429 `batch_limit`, 4404 unknown plan, 4422 invalid inputs, and a failed run's \
status) |
"""

DESCRIPTION = (
    """Streaming chat over a WebSocket: the client sends one `ChatRequest` frame
(within {timeout:g} s of connecting); the server answers with JSON text frames — `demo`
(only in the demo fallback), `token` frames as the model produces text, and a last `done`
frame — with a `ping` every {ping:g} s while the answer is under way. Each server frame is
a JSON object told apart by its first key. The unit of work (quota, concurrency slot)
starts with the request frame.

Plan runs: instead of a `ChatRequest`, the first frame may be a `runPlan` frame
(`{{"type": "run_plan", "playbook_id": …, "inputs": {{…}}}}`, or `plan_id` for a plan from
`execution_mode: plan`). The run is admitted as a batch job (the tier's "batch jobs
active"); the server sends `planRun` (the run's id), a `planStep` frame as each step
starts and ends, pings, and `done` with the run's action descriptors. Closing the socket
does not cancel the run (`DELETE /api/v1/plans/runs/{{id}}` does).

Credentials, as over REST: `?token=` (an access token or a demo session token), an
`Authorization: Bearer` header, `X-Demo-Session-Id`, or none (an anonymous visitor,
identified by the `demo_session_id` cookie).

"""
    + CLOSE_CODES
)


def _schemas(models: list[tuple[type[BaseModel], JsonSchemaMode]]) -> tuple[dict, dict]:
    refs, definitions = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return refs, definitions.get("$defs", {})


def _message(name: str, model: type[BaseModel], summary: str, ref: dict) -> dict[str, Any]:
    return {
        "name": name,
        "title": model.__name__,
        "summary": summary,
        "contentType": "application/json",
        "payload": ref,
    }


def build_asyncapi(settings: Settings, *, host: str, secure: bool) -> dict[str, Any]:
    """The document, for clients that reach the server at `host`."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (model, "validation") for model, _ in CLIENT_MESSAGES.values()
    ] + [(model, "serialization") for model, _ in SERVER_MESSAGES.values()]
    refs, schemas = _schemas(models)
    messages: dict[str, Any] = {}
    for name, (model, summary) in CLIENT_MESSAGES.items():
        messages[name] = _message(name, model, summary, refs[(model, "validation")])
    for name, (model, summary) in SERVER_MESSAGES.items():
        messages[name] = _message(name, model, summary, refs[(model, "serialization")])

    def channel_messages(names: list[str]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{CHANNEL}/messages/{name}"} for name in names]

    timeout = settings.WS_FIRST_FRAME_TIMEOUT_SECONDS
    security = [{"$ref": f"#/components/securitySchemes/{name}"} for name in SECURITY_SCHEMES]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Adiuva Cloud API: chat stream",
            "version": __version__,
            "description": DESCRIPTION.format(
                timeout=timeout,
                ping=settings.WS_PING_INTERVAL_SECONDS,
                max_frame=settings.WS_MAX_FRAME_BYTES,
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "api": {
                "host": host,
                "protocol": "wss" if secure else "ws",
                "description": "This server.",
            }
        },
        "channels": {
            CHANNEL: {
                "address": ADDRESS,
                "title": "Chat stream",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "token": {
                                    "type": "string",
                                    "description": "An access token or a demo session token.",
                                }
                            },
                        },
                    }
                },
            }
        },
        "operations": {
            "receiveChatRequest": {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{CHANNEL}"},
                "summary": "The client's request: one frame, first (a chat request or a run).",
                "messages": channel_messages(list(CLIENT_MESSAGES)),
                "security": security,
            },
            "sendAnswer": {
                "action": "send",
                "channel": {"$ref": f"#/channels/{CHANNEL}"},
                "summary": "The answer: demo?, token*, done — or planRun, planStep*, done — "
                "with pings, or an error.",
                "messages": channel_messages(list(SERVER_MESSAGES)),
            },
        },
        "components": {
            "messages": messages,
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
