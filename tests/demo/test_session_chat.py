"""Chat inside a demo session: the workspace as context, demo quotas, the canned fallback."""

from __future__ import annotations

import pytest
from httpx_ws import aconnect_ws
from sqlalchemy import select

from app.chat import service as chat_service
from app.models import QuotaCounter, QuotaKind
from tests.chat.support import collect, ws_client
from tests.support.demo import SESSIONS, header, start_session

pytestmark = pytest.mark.usefixtures("backend")

CHAT = "/api/v1/chat"
PACKAGING = {"message": "Mark the packaging mock-ups task as done"}
# The demo model finds no task called that, so it makes no tool call.
UNKNOWN = {"message": "Mark the unicorn grooming task as done"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_chat_without_context_acts_on_the_session_workspace(client, monkeypatch):
    seen = []
    original = chat_service.orchestrator_for

    def spy(settings, tiers, plans, unit, canned=None):
        seen.append(unit)
        return original(settings, tiers, plans, unit, canned)

    monkeypatch.setattr(chat_service, "orchestrator_for", spy)
    session = await start_session(client)
    response = await client.post(CHAT, json=PACKAGING, headers=header(session["session_id"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["agent"] == "task_agent" and body["demo"] is False
    # The template's own task id: the agent saw the session's workspace.
    assert body["actions"] == [
        {
            "type": "update_record",
            "table": "tasks",
            "id": "task_nw_packaging",
            "data": {"status": "done"},
        }
    ]
    [unit] = seen
    assert unit.demo_session_id == session["session_id"]
    assert unit.tenant_id is not None and str(unit.tenant_id) == session["virtual_tenant_id"]

    # The agents' actions apply to the session's workspace as they come.
    applied = await client.post(
        f"{SESSIONS}/{session['session_id']}/workspace/actions",
        json={"actions": body["actions"]},
    )
    assert applied.status_code == 200, applied.text
    task = next(t for t in applied.json()["tasks"] if t["id"] == "task_nw_packaging")
    assert task["status"] == "done"


async def test_every_kind_of_chat_action_applies_to_the_workspace_as_it_comes(client):
    session = await start_session(client)
    headers = header(session["session_id"])
    messages = [
        "Write a note about the kickoff: we ship the beta on Friday",
        "Add a comment to the packaging mock-ups task: the printer wants PDFs",
        "Remind me to call the printer tomorrow, high priority",
    ]
    actions = []
    for message in messages:
        response = await client.post(CHAT, json={"message": message}, headers=headers)
        assert response.status_code == 200, response.text
        actions += response.json()["actions"]
    kinds = {(a["type"], a["table"]) for a in actions}
    assert {
        ("create_record", "notes"),
        ("index_document", "notes"),
        ("create_record", "comments"),
        ("create_record", "tasks"),
        ("send_notification", "tasks"),
    } <= kinds

    applied = await client.post(
        f"{SESSIONS}/{session['session_id']}/workspace/actions", json={"actions": actions}
    )
    assert applied.status_code == 200, applied.text
    workspace = applied.json()
    ids = {a["table"]: a["id"] for a in actions if a["type"] == "create_record"}
    note = next(n for n in workspace["notes"] if n["id"] == ids["notes"])
    assert "we ship the beta on Friday" in note["body"]
    packaging = next(t for t in workspace["tasks"] if t["id"] == "task_nw_packaging")
    comment = next(c for c in packaging["comments"] if c["id"] == ids["comments"])
    assert "the printer wants PDFs" in comment["body"]
    task = next(t for t in workspace["tasks"] if t["id"] == ids["tasks"])
    assert task["priority"] == "high"


async def test_the_session_token_works_as_well_as_the_header(client):
    session = await start_session(client, "product_team")
    workspace = (await client.get(f"{SESSIONS}/{session['session_id']}/workspace")).json()
    task = workspace["tasks"][0]
    response = await client.post(
        CHAT,
        json={"message": f"Set the {task['title']} task to low priority"},
        headers=_bearer(session["session_token"]),
    )
    assert response.status_code == 200, response.text
    [action] = response.json()["actions"]
    assert action["id"] == task["id"] and action["data"]["priority"] == "low"


async def test_a_client_context_wins_over_the_workspace(client):
    session = await start_session(client)
    context = {"tasks": [{"id": "task_mine", "title": "Packaging mock-ups"}]}
    response = await client.post(
        CHAT, json={**PACKAGING, "context": context}, headers=header(session["session_id"])
    )
    assert response.status_code == 200
    assert [a["id"] for a in response.json()["actions"]] == ["task_mine"]


async def test_each_session_chats_over_its_own_workspace(client):
    one, two = await start_session(client), await start_session(client)
    created = await client.post(
        f"{SESSIONS}/{one['session_id']}/workspace/actions",
        json={
            "actions": [
                {
                    "type": "create_record",
                    "table": "tasks",
                    "id": "task_call_printer",
                    "data": {"title": "Call the printer"},
                }
            ]
        },
    )
    assert created.status_code == 200, created.text
    message = {"message": "Mark the call the printer task as done"}
    mine = await client.post(CHAT, json=message, headers=header(one["session_id"]))
    theirs = await client.post(CHAT, json=message, headers=header(two["session_id"]))
    assert [a["id"] for a in mine.json()["actions"]] == ["task_call_printer"]
    assert theirs.status_code == 200
    assert "task_call_printer" not in theirs.text and "printer" not in theirs.json()["response"]


async def test_one_llm_unit_then_fallback_then_429_after_ten(client, app):
    session = await start_session(client)
    headers = header(session["session_id"])
    answers = []
    for _ in range(10):
        response = await client.post(CHAT, json=PACKAGING, headers=headers)
        assert response.status_code == 200, response.text
        answers.append((response.json()["demo"], response.headers.get("x-demo-mode")))
        # The demo model still answers the actual message, on the session's workspace.
        assert response.json()["actions"][0]["id"] == "task_nw_packaging"
    assert answers == [(False, None)] + [(True, "true")] * 9

    status = (await client.get("/api/v1/quota/status", headers=headers)).json()
    assert status["identity"] == "demo" and status["demo"] is True
    assert status["daily"] == {"limit": 10, "used": 10, "remaining": 0}
    assert status["llm"]["remaining"] == 0 and status["fallback_active"] is True

    refused = await client.post(CHAT, json=PACKAGING, headers=headers)
    assert refused.status_code == 429 and refused.json()["error"] == "daily_quota"
    assert refused.headers["retry-after"]

    async with app.state.db.sessionmaker() as db:
        subjects = set(
            await db.scalars(select(QuotaCounter.subject).where(QuotaCounter.kind == QuotaKind.LLM))
        )
    # The session's own LLM count, and its address's (shared by every visitor there).
    assert subjects == {f"demo:{session['session_id']}", "ip:203.0.113.10"}

    # A new session is a new demo identity with its own quota (the address has LLM left).
    other = await start_session(client)
    fresh = await client.post(CHAT, json=PACKAGING, headers=header(other["session_id"]))
    assert fresh.status_code == 200 and fresh.json()["demo"] is False


async def test_the_fallback_answers_from_the_stored_example_when_the_model_cannot(client):
    assert (await client.post("/api/v1/demo/examples/init")).status_code == 200
    examples = {e["agent"]: e for e in (await client.get("/api/v1/demo/examples")).json()}
    session = await start_session(client)
    headers = header(session["session_id"])

    first = await client.post(CHAT, json=UNKNOWN, headers=headers)  # the one LLM unit
    assert first.json()["demo"] is False
    assert first.json()["response"] != examples["task_agent"]["canned_answer"]

    canned = await client.post(CHAT, json=UNKNOWN, headers=headers)
    assert canned.status_code == 200
    assert canned.headers["x-demo-mode"] == "true"
    body = canned.json()
    assert body["demo"] is True and body["agent"] == "task_agent" and body["actions"] == []
    assert body["response"] == examples["task_agent"]["canned_answer"]
    assert "Call Anna" in body["response"]
    # Rendered from the stored example's inputs, not stored text.
    assert "Created task “Call Anna”" in body["response"]

    # A message the demo model can act on still gets its own answer, marked demo.
    handled = await client.post(CHAT, json=PACKAGING, headers=headers)
    assert handled.json()["demo"] is True
    assert handled.json()["actions"][0]["id"] == "task_nw_packaging"
    assert handled.json()["response"] != examples["task_agent"]["canned_answer"]


async def test_without_stored_examples_the_fallback_is_the_demo_model_alone(client):
    session = await start_session(client)
    headers = header(session["session_id"])
    await client.post(CHAT, json=UNKNOWN, headers=headers)
    fallback = await client.post(CHAT, json=UNKNOWN, headers=headers)
    assert fallback.json()["demo"] is True and fallback.json()["actions"] == []
    assert not fallback.json()["response"].startswith("Demo mode")


async def test_websocket_in_a_session_uses_the_workspace_and_the_canned_fallback(client, app):
    assert (await client.post("/api/v1/demo/examples/init")).status_code == 200
    canned = {e["agent"]: e for e in (await client.get("/api/v1/demo/examples")).json()}[
        "task_agent"
    ]["canned_answer"]
    session = await start_session(client)
    headers = header(session["session_id"])
    results = []
    async with ws_client(app) as wc:
        for message in (PACKAGING, UNKNOWN):
            async with aconnect_ws("/api/v1/chat/stream", wc, headers=headers) as ws:
                await ws.send_json(message)
                frames, done = await collect(ws)
                tokens = "".join(f["token"] for f in frames if "token" in f)
                results.append((frames[0] == {"demo": True}, tokens, done))
    (marked1, _, done1), (marked2, tokens2, done2) = results
    assert not marked1 and done1["demo"] is False
    assert done1["actions"][0]["id"] == "task_nw_packaging"
    assert marked2 and done2["demo"] is True
    assert done2["response"] == canned == tokens2
