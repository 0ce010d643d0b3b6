"""Demo examples: init-status, init (idempotent, safe when two run at once), their content."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from app.demo.examples import EXAMPLE_TODAY, SEED_CONTEXT, DemoExampleService
from app.models import DemoExample, QuotaCounter, QuotaKind

pytestmark = pytest.mark.usefixtures("backend")

STATUS = "/api/v1/demo/examples/init-status"
INIT = "/api/v1/demo/examples/init"
MINTED_ID = re.compile(r"_[0-9a-f]{16}\b")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d)?")
AGENTS = ["checkpoint_agent", "note_agent", "project_agent", "task_agent"]


async def _rows(app) -> dict[str, DemoExample]:
    async with app.state.db.sessionmaker() as session:
        rows = await session.scalars(select(DemoExample))
        return {row.agent: row for row in rows}


def _client(app, ip: str) -> httpx.AsyncClient:
    # A different address is a different anonymous visitor with its own quota and slot.
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_status_names_the_missing_agents_then_init_fills_them(client, app):
    before = await client.get(STATUS)
    assert before.status_code == 200
    body = before.json()
    assert body["can_init"] is True and body["total_agents"] == 4
    assert body["agents_with_examples"] == [] and sorted(body["missing"]) == AGENTS

    init = await client.post(INIT)
    assert init.status_code == 200, init.text
    body = init.json()
    assert sorted(body["created"]) == AGENTS and body["skipped"] == []
    assert body["can_init"] is False and body["missing"] == []
    assert sorted(body["agents_with_examples"]) == AGENTS

    after = (await client.get(STATUS)).json()
    assert after["can_init"] is False and sorted(after["agents_with_examples"]) == AGENTS
    assert len(await _rows(app)) == 4


async def test_init_is_idempotent(client, app):
    assert (await client.post(INIT)).status_code == 200
    first = await _rows(app)
    again = await client.post(INIT)
    assert again.status_code == 200
    assert again.json()["created"] == [] and sorted(again.json()["skipped"]) == AGENTS
    second = await _rows(app)
    # Nothing was regenerated: the stored conversations (with their minted ids) are untouched.
    assert {a: (r.request, r.response, r.created_at) for a, r in first.items()} == {
        a: (r.request, r.response, r.created_at) for a, r in second.items()
    }


async def test_init_is_a_counted_unit_of_work(client, app):
    assert (await client.post(INIT)).status_code == 200
    async with app.state.db.sessionmaker() as session:
        used = await session.scalar(
            select(func.sum(QuotaCounter.used)).where(
                QuotaCounter.subject.like("anon:%"), QuotaCounter.kind == QuotaKind.TOTAL
            )
        )
    assert used == 1
    status = (await client.get("/api/v1/quota/status")).json()
    assert status["daily"]["used"] == 1


async def test_two_concurrent_inits_over_http_store_each_example_once(app):
    async with _client(app, "198.51.100.1") as one, _client(app, "198.51.100.2") as two:
        first, second = await asyncio.gather(one.post(INIT), two.post(INIT))
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    created = first.json()["created"] + second.json()["created"]
    # Every agent stored by exactly one of the two calls.
    assert sorted(created) == AGENTS
    assert len(await _rows(app)) == 4


async def test_two_concurrent_inits_in_the_service_store_each_example_once(app):
    async def init() -> list[str]:
        async with app.state.db.sessionmaker() as session:
            service = DemoExampleService(session)
            result = await service.init()
            await session.commit()
            return result.created

    results = await asyncio.gather(*(init() for _ in range(3)))
    assert sorted(a for created in results for a in created) == AGENTS
    assert len(await _rows(app)) == 4


async def test_each_example_is_a_conversation_over_the_agents_metadata_examples(client, app):
    agents = {a["id"]: a for a in (await client.get("/api/v1/agents")).json()}
    assert (await client.post(INIT)).status_code == 200
    examples = {e["agent"]: e for e in (await client.get("/api/v1/demo/examples")).json()}
    assert set(examples) == set(agents)
    for name, example in examples.items():
        assert example["messages"] == agents[name]["examples"]
        assert [t["message"] for t in example["turns"]] == agents[name]["examples"]
        assert all(t["response"] for t in example["turns"])
        assert example["canned_answer"].startswith("Demo mode")

    task = examples["task_agent"]["turns"]
    [created] = [a for a in task[0]["actions"] if a["type"] == "create_record"]
    # The offline model on a fixed date: "tomorrow" is always the day after EXAMPLE_TODAY.
    assert created["data"]["title"] == "Call Anna" and created["data"]["priority"] == "high"
    assert created["data"]["due_date"] == (EXAMPLE_TODAY + timedelta(days=1)).isoformat()
    # Later turns see the earlier ones: "mark the call Anna task as done" updates that task.
    [done] = task[-1]["actions"]
    assert done["type"] == "update_record" and done["id"] == created["id"]
    assert done["data"] == {"status": "done"}
    assert "Call Anna" in examples["task_agent"]["canned_answer"]

    checkpoint = examples["checkpoint_agent"]["turns"]
    milestone = next(a for a in checkpoint[1]["actions"] if a["type"] == "create_record")
    assert milestone["data"]["project_id"] == "project_garden_party"


async def test_examples_are_deterministic_up_to_minted_ids_and_timestamps(app):
    async def generate() -> dict:
        async with app.state.db.sessionmaker() as session:
            service = DemoExampleService(session)
            await service.init()
            examples = await service.list()
            await session.rollback()  # leave the table empty for the second run
        return {e.agent: e for e in examples}

    def without_minted_ids(examples: dict) -> dict:
        return {
            agent: TIMESTAMP.sub(
                "<now>", MINTED_ID.sub("_<id>", json.dumps([t.model_dump() for t in e.turns]))
            )
            for agent, e in examples.items()
        }

    first, second = await generate(), await generate()
    assert set(first) == set(AGENTS)
    assert without_minted_ids(first) == without_minted_ids(second)


async def test_rows_keep_only_the_inputs_and_answers_are_rendered_when_read(client, app):
    assert (await client.post(INIT)).status_code == 200
    rows = await _rows(app)
    agents = {a["id"]: a for a in (await client.get("/api/v1/agents")).json()}
    for name, row in rows.items():
        assert row.request == {"messages": agents[name]["examples"], "context": SEED_CONTEXT}
        assert row.response == {"turns": [{"message": m} for m in agents[name]["examples"]]}


async def test_rows_stored_by_an_earlier_version_are_answered_in_the_current_wording(client, app):
    # An earlier version stored the answers' text; what it stored is never served again.
    stale = "Demo mode: the wording of an earlier version."
    async with app.state.db.sessionmaker() as session, session.begin():
        session.add(
            DemoExample(
                agent="task_agent",
                request={
                    "messages": ["Add a task to call Anna tomorrow, high priority"],
                    "context": SEED_CONTEXT,
                },
                response={
                    "turns": [
                        {
                            "message": "Add a task to call Anna tomorrow, high priority",
                            "response": "Old answer.",
                            "actions": [],
                        }
                    ],
                    "canned_answer": stale,
                    "model": "demo",
                },
            )
        )
    [example] = (await client.get("/api/v1/demo/examples")).json()
    assert example["turns"][0]["response"].startswith("Created task “Call Anna”")
    assert example["turns"][0]["actions"][0]["data"]["title"] == "Call Anna"
    assert example["canned_answer"] != stale and "Call Anna" in example["canned_answer"]
    assert "Old answer." not in example["canned_answer"]
