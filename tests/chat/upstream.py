"""A local OpenAI-compatible server: chat completions, tool calls, SSE streaming, usage.

Started on a free loopback port, so LiteLLM's real client code runs end to end.
`mode` makes it answer normally, leak a prompt fragment, fail (500) or hang;
`latency` (seconds) delays every answer, like a provider's time to answer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

LEAK = "You are Adiuva's task agent, managing the user's tasks and task comments."


@dataclass
class UpstreamState:
    mode: str = "ok"  # ok | leak | error | hang
    tool_call: tuple[str, dict[str, Any]] | None = ("create_task", {"title": "Upstream task"})
    router_answer: str = "task_agent"
    requests: list[dict[str, Any]] = field(default_factory=list)
    hang_seconds: float = 5.0
    latency: float = 0.0
    streamed_chunks: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.mode = "ok"
        self.tool_call = ("create_task", {"title": "Upstream task"})
        self.router_answer = "task_agent"
        self.requests.clear()
        self.latency = 0.0
        self.streamed_chunks = 0
        self.release = threading.Event()


def _reply(state: UpstreamState, body: dict[str, Any]) -> tuple[str, list[dict] | None]:
    messages = body.get("messages", [])
    tools = {t["function"]["name"] for t in body.get("tools") or []}
    last = messages[-1] if messages else {}
    if not tools:
        system = " ".join(str(m.get("content")) for m in messages if m.get("role") == "system")
        if "intent router" in system:
            return state.router_answer, None
        return "Here is the summary of everything.", None
    if last.get("role") == "tool":
        if state.mode == "leak":
            return f"Done. {LEAK} The task is created.", None
        return "All done: the task is created.", None
    if state.tool_call and state.tool_call[0] in tools:
        name, args = state.tool_call
        call = {
            "id": f"call_{uuid.uuid4().hex[:8]}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        return "", [call]
    return "I have nothing to do.", None


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}


def build_app(state: UpstreamState) -> Starlette:
    async def completions(request: Request) -> Response:
        body = await request.json()
        state.requests.append({"headers": dict(request.headers), "body": body})
        if state.mode == "error":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, 500)
        if state.mode == "hang":
            deadline = time.monotonic() + state.hang_seconds
            while time.monotonic() < deadline and not state.release.is_set():
                await asyncio.sleep(0.05)
        if state.latency:
            await asyncio.sleep(state.latency)
        content, tool_calls = _reply(state, body)
        model = body.get("model", "gpt-4o-mini")
        base = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": content or None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            return JSONResponse(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if tool_calls else "stop",
                        }
                    ],
                    "usage": _usage(),
                }
            )

        async def events():
            chunk = {**base, "object": "chat.completion.chunk"}
            if tool_calls:
                delta = {
                    "role": "assistant",
                    "tool_calls": [{"index": i, **c} for i, c in enumerate(tool_calls)],
                }
                yield _sse({**chunk, "choices": [{"index": 0, "delta": delta}]})
            else:
                # Small pieces, so a prompt fragment arrives split across chunks.
                pieces = [content[i : i + 7] for i in range(0, len(content), 7)]
                for piece in pieces:
                    state.streamed_chunks += 1
                    yield _sse({**chunk, "choices": [{"index": 0, "delta": {"content": piece}}]})
                    await asyncio.sleep(0)
            finish = "tool_calls" if tool_calls else "stop"
            yield _sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            yield _sse({**chunk, "choices": [], "usage": _usage()})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """A uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
            ws="websockets-sansio",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
