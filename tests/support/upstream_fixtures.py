"""The local OpenAI-compatible upstream (tests/chat/upstream.py) for server-process tests.

Import both fixtures into a test module to use them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chat.upstream import ServerThread, UpstreamState, build_app

# Long enough for any test: a hanging upstream call ends when the test releases it.
HANG_SECONDS = 120


@pytest.fixture(scope="module")
def upstream_thread() -> Iterator[tuple[ServerThread, UpstreamState]]:
    state = UpstreamState(hang_seconds=HANG_SECONDS)
    server = ServerThread(build_app(state)).start()
    yield server, state
    state.release.set()
    server.stop()


@pytest.fixture
def upstream(upstream_thread: tuple[ServerThread, UpstreamState]) -> Iterator[UpstreamState]:
    _, state = upstream_thread
    state.reset()
    state.hang_seconds = HANG_SECONDS
    yield state
    state.release.set()


def upstream_env(server: ServerThread) -> dict[str, object]:
    """Settings that send every LLM call of a server process to this upstream."""
    return {
        "LLM_MODEL": "openai/gpt-4o-mini",
        "LLM_ROUTER_MODEL": "openai/gpt-4o-mini",
        "LLM_API_BASE": f"http://127.0.0.1:{server.port}/v1",
        "LLM_API_KEY": "sk-serverkey-0123456789",
        "LLM_TIMEOUT_SECONDS": HANG_SECONDS,
    }
