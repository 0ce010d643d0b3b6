"""A caller's key chooses a key, never a destination: through the whole stack, on loopback only.

The operator's upstream (`LLM_API_BASE`) and the BYOK base for openai are two local
OpenAI-compatible servers; listeners on the default local ports of ollama (11434)
and llamafile (8080) check that nothing ever reaches them.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.chat.conftest import (
    BYOK_KEY,
    ROOMY_QUOTAS,
    SERVER_KEY,
    fresh_state,
    running_upstream,
)
from tests.chat.support import ANNA
from tests.chat.upstream import ServerThread, UpstreamState

pytestmark = pytest.mark.usefixtures("backend")

LOCAL_PORTS = (11434, 8080)  # ollama's and llamafile's defaults


@pytest.fixture(scope="module")
def byok_upstream() -> Iterator[tuple[ServerThread, UpstreamState]]:
    with running_upstream() as upstream:
        yield upstream


@pytest.fixture
def settings_overrides(upstream_server, byok_upstream) -> dict[str, object]:
    operator, _ = upstream_server
    byok, _ = byok_upstream
    return {
        **ROOMY_QUOTAS,
        "LLM_MODEL": "openai/gpt-4o-mini",
        "LLM_ROUTER_MODEL": "openai/gpt-4o-mini",
        "LLM_API_BASE": f"http://127.0.0.1:{operator.port}/v1",
        "LLM_API_KEY": SERVER_KEY,
        "LLM_TIMEOUT_SECONDS": 5.0,
        "BYOK_API_BASES": {"openai": f"http://127.0.0.1:{byok.port}/v1"},
    }


@pytest.fixture
def local_listeners() -> Iterator[list[socket.socket]]:
    """Listening sockets on the local LLM ports that are free on this machine."""
    listeners = []
    for port in LOCAL_PORTS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        sock.listen(8)
        listeners.append(sock)
    yield listeners
    for sock in listeners:
        sock.close()


def connections_waiting(listeners: list[socket.socket]) -> bool:
    # A connection attempt completes in the kernel's backlog: the socket turns readable.
    readable, _, _ = select.select(listeners, [], [], 0)
    return bool(readable)


@pytest.fixture
def byok_state(byok_upstream) -> Iterator[UpstreamState]:
    yield from fresh_state(byok_upstream)


async def test_byok_call_reaches_only_the_byok_base(
    client: httpx.AsyncClient, upstream: UpstreamState, byok_state: UpstreamState
) -> None:
    response = await client.post(
        "/api/v1/chat", json=ANNA, headers={"X-LLM-API-KEY": f"openai:{BYOK_KEY}"}
    )
    assert response.status_code == 200, response.text
    assert byok_state.requests
    assert {r["headers"]["authorization"] for r in byok_state.requests} == {f"Bearer {BYOK_KEY}"}
    assert upstream.requests == []  # the operator's upstream served nobody's key for free

    # Without a key, the operator's upstream with the operator's key, as before.
    byok_state.reset()
    own = await client.post("/api/v1/chat", json=ANNA)
    assert own.status_code == 200
    assert {r["headers"]["authorization"] for r in upstream.requests} == {f"Bearer {SERVER_KEY}"}
    assert byok_state.requests == []


@pytest.mark.parametrize(
    "key",
    [
        "ollama:x",
        "ollama:sk-local-0123456789",
        "ollama_chat:sk-local-0123456789",
        "llamafile:sk-local-0123456789",
        "lm_studio:sk-local-0123456789",
        "hosted_vllm:sk-local-0123456789",
        "vllm:sk-local-0123456789",
        "openai_like:sk-local-0123456789",
        "custom_openai:sk-local-0123456789",
        "madeup:sk-local-0123456789",
    ],
)
async def test_local_provider_keys_reach_nothing(
    client: httpx.AsyncClient,
    upstream: UpstreamState,
    byok_state: UpstreamState,
    local_listeners: list[socket.socket],
    key: str,
) -> None:
    response = await client.post("/api/v1/chat", json=ANNA, headers={"X-LLM-API-KEY": key})
    assert response.status_code == 400
    assert response.json()["error"] in ("llm_provider_not_allowed", "invalid_llm_key")
    assert key.partition(":")[2] not in response.text or key == "ollama:x"
    assert not connections_waiting(local_listeners)
    assert upstream.requests == [] and byok_state.requests == []
    status = (await client.get("/api/v1/quota/status")).json()
    assert status["daily"]["used"] == 0
