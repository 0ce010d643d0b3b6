"""Domain routers: a request is matched by the router it belongs to, and by no other."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from app.kit.routing import DomainRouter


def build() -> tuple[FastAPI, dict[str, DomainRouter]]:
    projects = DomainRouter(prefix="/projects")
    people = DomainRouter()
    catch_all = DomainRouter()

    @projects.get("")
    async def list_projects() -> list[str]:
        return ["apollo"]

    @projects.get("/{project_id}")
    async def get_project(project_id: str) -> dict[str, str]:
        return {"id": project_id}

    @people.get("/people/{person}")
    async def get_person(person: str) -> dict[str, str]:
        return {"person": person}

    @people.post("/teams")
    async def make_team() -> dict[str, str]:
        return {"team": "new"}

    @catch_all.get("/{anything}/about")
    async def about(anything: str) -> dict[str, str]:
        return {"about": anything}

    app = FastAPI()
    routers = {"projects": projects, "people": people, "anything": catch_all}
    for router in routers.values():
        app.include_router(router, prefix="/api/v1")
    return app, routers


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> list[APIRouter]:
    """The routers whose routes FastAPI went through, in order."""
    seen: list[APIRouter] = []
    original = APIRouter.matches

    def matches(self, scope):
        seen.append(self)
        return original(self, scope)

    monkeypatch.setattr(APIRouter, "matches", matches)
    return seen


async def get(app: FastAPI, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path)


async def test_each_route_is_found_under_its_router():
    app, _ = build()
    assert (await get(app, "GET", "/api/v1/projects")).json() == ["apollo"]
    assert (await get(app, "GET", "/api/v1/projects/apollo")).json() == {"id": "apollo"}
    assert (await get(app, "GET", "/api/v1/people/ada")).json() == {"person": "ada"}
    assert (await get(app, "POST", "/api/v1/teams")).json() == {"team": "new"}
    # A router whose route starts with a parameter is tried for any first segment.
    assert (await get(app, "GET", "/api/v1/teams/about")).json() == {"about": "teams"}


async def test_a_request_walks_only_the_routers_it_can_belong_to(scanned):
    app, routers = build()
    assert (await get(app, "GET", "/api/v1/people/ada")).status_code == 200
    # The projects router declined at its first segment; the catch-all cannot.
    assert routers["projects"] not in scanned
    assert routers["people"] in scanned
    scanned.clear()
    assert (await get(app, "GET", "/api/v1/elsewhere")).status_code == 404
    assert routers["projects"] not in scanned and routers["people"] not in scanned


async def test_wrong_method_is_405_and_unknown_path_404():
    app, _ = build()
    assert (await get(app, "GET", "/api/v1/teams")).status_code == 405
    assert (await get(app, "GET", "/api/v1/nothing-here")).status_code == 404
    assert (await get(app, "GET", "/api/v2/projects")).status_code == 404
    assert (await get(app, "GET", "/api/v1projects")).status_code == 404


async def test_routes_added_after_a_request_are_found():
    router = DomainRouter()

    @router.get("/alpha")
    async def alpha() -> str:
        return "alpha"

    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    assert (await get(app, "GET", "/api/v1/alpha")).json() == "alpha"

    @router.get("/beta")
    async def beta() -> str:
        return "beta"

    nested = DomainRouter()

    @nested.get("/gadgets")
    async def gadgets() -> str:
        return "gadgets"

    router.include_router(nested, prefix="/gamma")
    assert (await get(app, "GET", "/api/v1/beta")).json() == "beta"
    assert (await get(app, "GET", "/api/v1/gamma/gadgets")).json() == "gadgets"
    assert router.first_segments() == frozenset({"alpha", "beta", "gamma"})
