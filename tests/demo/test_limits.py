"""What one visitor can take from the demo, and what the logs say about a session.

- Session creation is capped per client address (429 `demo_session_limit`).
- A session's workspace is capped in records and in bytes (409 `demo_workspace_full`).
- No log record names a session id or token across a session's whole life.
"""

from __future__ import annotations

import json
import logging
from datetime import date

import httpx
import pytest
from fastapi import FastAPI

from app.demo.limits import workspace_bytes, workspace_items
from app.demo.session_ref import redact_session_path, session_ref
from app.demo.templates import load_templates
from tests.chat.support import ANNA
from tests.support.demo import SESSIONS, header, start_session

pytestmark = pytest.mark.usefixtures("backend")

# The freelancer template's records: projects, tasks, comments, checkpoints and notes.
TEMPLATE_ITEMS = workspace_items(load_templates().get("freelancer").materialize(date.today()))


def actions_url(session_id: str) -> str:
    return f"{SESSIONS}/{session_id}/workspace/actions"


async def workspace(client: httpx.AsyncClient, session_id: str) -> dict:
    response = await client.get(f"{SESSIONS}/{session_id}/workspace")
    assert response.status_code == 200, response.text
    return response.json()


def new_note(title: str, body: str = "") -> dict:
    return {"type": "create_record", "table": "notes", "data": {"title": title, "body": body}}


# --- sessions per address ------------------------------------------------------------------


@pytest.mark.parametrize("extra_settings", [{"DEMO_SESSIONS_PER_IP": "2/hour"}])
async def test_session_creation_is_capped_per_address(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await start_session(client)
    await start_session(client)
    refused = await client.post(SESSIONS, json={"demo_account_type": "freelancer"})
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["error"] == "demo_session_limit" and body["request_id"]
    assert "2 per 1 hour" in body["message"]
    assert int(refused.headers["retry-after"]) > 0

    # Another address is not affected.
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        assert (await start_session(other))["session_id"]


# --- workspace caps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra_settings", [{"DEMO_WORKSPACE_MAX_ITEMS": TEMPLATE_ITEMS + 2}], ids=["items"]
)
async def test_a_workspace_holds_at_most_the_item_cap(client: httpx.AsyncClient) -> None:
    sid = (await start_session(client))["session_id"]
    assert workspace_items(await workspace(client, sid)) == TEMPLATE_ITEMS
    added = await client.post(actions_url(sid), json={"actions": [new_note("a"), new_note("b")]})
    assert added.status_code == 200, added.text[:200]

    full = await client.post(actions_url(sid), json={"actions": [new_note("c")]})
    assert full.status_code == 409, full.text
    assert full.json()["error"] == "demo_workspace_full"
    assert f"at most {TEMPLATE_ITEMS + 2} records" in full.json()["message"]
    assert workspace_items(await workspace(client, sid)) == TEMPLATE_ITEMS + 2

    # Making room always works, and then the slot can be used again.
    note_id = next(n["id"] for n in (await workspace(client, sid))["notes"] if n["title"] == "a")
    delete = {"type": "delete_record", "table": "notes", "id": note_id}
    assert (await client.post(actions_url(sid), json={"actions": [delete]})).status_code == 200
    again = await client.post(actions_url(sid), json={"actions": [new_note("c")]})
    assert again.status_code == 200, again.text[:200]


@pytest.mark.parametrize("extra_settings", [{"DEMO_WORKSPACE_MAX_BYTES": 20_000}], ids=["bytes"])
async def test_a_workspace_holds_at_most_the_byte_cap(client: httpx.AsyncClient) -> None:
    sid = (await start_session(client))["session_id"]
    start = workspace_bytes(await workspace(client, sid))
    assert start + 5_000 < 20_000 < start + 5_000 + 12_000
    first = await client.post(actions_url(sid), json={"actions": [new_note("long", "x" * 5_000)]})
    assert first.status_code == 200, first.text[:200]

    full = await client.post(actions_url(sid), json={"actions": [new_note("more", "y" * 12_000)]})
    assert full.status_code == 409, full.text[:200]
    assert full.json()["error"] == "demo_workspace_full"
    assert "at most 20000 bytes" in full.json()["message"]
    after = await workspace(client, sid)
    assert [n["title"] for n in after["notes"]].count("more") == 0
    assert workspace_bytes(after) < 20_000


# --- session ids never logged ------------------------------------------------------------------


def test_the_access_log_names_sessions_by_a_hash() -> None:
    sid = "demo_abcDEF123-_xyz"
    assert redact_session_path(f"/api/v1/demo/sessions/{sid}") == (
        f"/api/v1/demo/sessions/{session_ref(sid)}"
    )
    assert redact_session_path(f"/api/v1/demo/sessions/{sid}/workspace/actions") == (
        f"/api/v1/demo/sessions/{session_ref(sid)}/workspace/actions"
    )
    assert redact_session_path("/api/v1/demo/sessions/current") == "/api/v1/demo/sessions/current"
    assert redact_session_path("/api/v1/demo/sessions") == "/api/v1/demo/sessions"
    assert session_ref(sid) == session_ref(sid) != session_ref(sid + "x")


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler could write of a record: message, arguments, extra fields."""
    fields = {key: repr(value) for key, value in vars(record).items()}
    return record.getMessage() + json.dumps(fields)


async def test_no_log_record_names_a_session(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await start_session(client)
    sid, token = created["session_id"], created["session_token"]
    url = f"{SESSIONS}/{sid}"
    assert (await client.get(url)).status_code == 200
    assert (await client.get(f"{SESSIONS}/current", headers=header(sid))).status_code == 200
    extended = await client.post(f"{url}/extend")
    assert extended.status_code == 200
    new_token = extended.json()["session_token"]
    chat = await client.post("/api/v1/chat", json=ANNA, headers=header(sid))
    assert chat.status_code == 200, chat.text
    bearer = {"Authorization": f"Bearer {new_token}"}
    assert (await client.post("/api/v1/chat", json=ANNA, headers=bearer)).status_code == 200
    applied = await client.post(actions_url(sid), json={"actions": [new_note("logged?")]})
    assert applied.status_code == 200
    assert (await client.delete(url)).status_code == 204
    assert (await client.get(url)).status_code == 410

    texts = [record_text(record) for record in caplog.records]
    # The requests were logged, naming the session by its hash.
    assert sum(session_ref(sid) in text for text in texts) >= 6
    for secret in (sid, sid.removeprefix("demo_"), token, new_token):
        leaks = [text for text in texts if secret in text]
        assert leaks == [], leaks[:1]
