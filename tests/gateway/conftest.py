"""A probe route registered as a unit of work, so the gate can be tested on its own."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, WebSocket

from app.kit.policy import RoutePolicy
from app.kit.units import UnitOfWork, UnitOfWorkDep

PROBE_PATH = "/api/v1/test/unit"
PROBE_WS_PATH = "/api/v1/test/ws"


@dataclass
class Probe:
    units: list[UnitOfWork] = field(default_factory=list)
    hold: asyncio.Event | None = None
    entered: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    fail: bool = False

    def holding(self) -> asyncio.Event:
        self.hold = asyncio.Event()
        return self.hold

    async def wait_entered(self, count: int = 1) -> None:
        for _ in range(count):
            await asyncio.wait_for(self.entered.acquire(), timeout=10)


def install_probe(app: FastAPI) -> Probe:
    probe = Probe()

    @app.post(PROBE_PATH)
    async def probe_unit(unit: UnitOfWorkDep) -> dict:
        probe.units.append(unit)
        probe.entered.release()
        if probe.hold is not None:
            await probe.hold.wait()
        if probe.fail:
            raise RuntimeError("probe failure")
        return {
            "use_llm": unit.llm.use_llm,
            "byok": unit.llm.byok,
            "provider": unit.llm.provider,
            "metered": unit.llm.metered,
            "subject": unit.subject,
        }

    @app.websocket(PROBE_WS_PATH)
    async def probe_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        probe.entered.release()
        await websocket.send_json({"hello": True})
        await websocket.receive_text()  # until the client goes away
        await websocket.close()

    unit = RoutePolicy(unit_of_work=True)
    app.state.route_policies.declare("POST", PROBE_PATH, unit)
    app.state.route_policies.declare("WEBSOCKET", PROBE_WS_PATH, unit)
    return probe


@pytest.fixture
def probe(app: FastAPI) -> Probe:
    return install_probe(app)
