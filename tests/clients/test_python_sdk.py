"""A Python client generated from the live `/openapi.json` walks the product unmodified.

openapi-python-client (the generator the desktop team's tooling uses) generates
the client once per session, failing on any warning; the walk then uses only the
generated package against a real server (`adiuva serve` over a socket): register
→ sign in → chat (offline demo model) → storage round trip → backup → quota, a
demo session by its `X-Demo-Session-Id`, and errors parsed into `ErrorBody`.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.support.billing import WEBHOOK_SECRET, checkout_completed, sign
from tests.support.servers import BIN, ServerProcess, base_env, start_single
from tests.support.settings import make_settings

PACKAGE = "adiuva_client"
# The account export is a ZIP: the generator reads binary bodies as application/octet-stream.
GENERATOR_CONFIG = (
    f"package_name_override: {PACKAGE}\npost_hooks: []\n"
    "content_type_overrides:\n  application/zip: application/octet-stream\n"
)


def live_document(directory: Path) -> dict[str, Any]:
    """`GET /openapi.json`, through the app's whole middleware stack."""
    app = create_app(make_settings("sqlite+aiosqlite://", directory / "data"))

    async def fetch() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            response = await c.get("/openapi.json")
            assert response.status_code == 200
            return response.json()

    return asyncio.run(fetch())


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """The document and the generator's output, once per session."""
    directory = tmp_path_factory.mktemp("sdk")
    document = live_document(directory)
    (directory / "openapi.json").write_text(json.dumps(document))
    (directory / "config.yaml").write_text(GENERATOR_CONFIG)
    result = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            "openapi.json",
            "--config",
            "config.yaml",
            "--meta",
            "none",
            "--output-path",
            PACKAGE,
            "--fail-on-warning",
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    # Nothing but the one progress line: any warning would be printed here.
    assert output.splitlines() == [f"Generating {PACKAGE}"], output
    sys.path.insert(0, str(directory))
    return document, output


@pytest.fixture(scope="session")
def sdk(generated) -> Iterator[ModuleType]:
    yield importlib.import_module(PACKAGE)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    env = base_env(database_url, tmp_path / "data", STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    process = start_single(env, tmp_path / "server")
    try:
        yield process
    finally:
        process.stop()


def signed_by_stripe(request: httpx.Request) -> None:
    """Plays Stripe: signs the exact bytes the generated client sends."""
    request.headers["Stripe-Signature"] = sign(request.content.decode())


def test_the_generator_takes_the_document_without_a_warning(generated) -> None:
    _, output = generated
    assert output == f"Generating {PACKAGE}"


@pytest.mark.usefixtures("backend")
def test_the_generated_client_walks_the_product(
    sdk: ModuleType, generated, server: ServerProcess
) -> None:
    document, _ = generated
    base = server.base_url
    assert httpx.get(f"{base}/openapi.json").json() == document  # what the server serves

    from adiuva_client import AuthenticatedClient, Client
    from adiuva_client.api.auth import auth_login, auth_me, auth_register
    from adiuva_client.api.backup import backup_history, backup_put_backup
    from adiuva_client.api.billing import billing_webhook
    from adiuva_client.api.chat import chat_send_message
    from adiuva_client.api.demo import (
        demo_apply_workspace_actions,
        demo_create_session,
        demo_current_session,
        demo_get_workspace,
    )
    from adiuva_client.api.quota import quota_status
    from adiuva_client.api.storage import (
        storage_create_record,
        storage_delete_record,
        storage_get_record,
    )
    from adiuva_client.models import (
        BackupHistory,
        BackupInfo,
        ChatRequest,
        ChatResponse,
        CreateDemoSession,
        DemoSessionInfo,
        ErrorBody,
        LoginRequest,
        PersonaProfile,
        QuotaStatus,
        RecordMetadata,
        RegisterRequest,
        StripeEvent,
        UserProfile,
        WebhookAck,
        Workspace,
        WorkspaceActions,
    )
    from adiuva_client.types import File

    anonymous = Client(base_url=base, raise_on_unexpected_status=True)

    # Register, then sign in.
    email, password = "mara.lindqvist@example.com", "correct horse battery staple"
    registered = auth_register.sync_detailed(
        client=anonymous, body=RegisterRequest(email=email, password=password)
    )
    assert registered.status_code == 201, registered.content
    tokens = auth_login.sync(client=anonymous, body=LoginRequest(email=email, password=password))
    user = AuthenticatedClient(base_url=base, token=tokens.access_token)
    me = auth_me.sync(client=user)
    assert isinstance(me, UserProfile) and me.email == email and me.tier == "free"

    # Stripe reports the checkout of the pro tier (cloud storage comes with it).
    stripe = Client(base_url=base, httpx_args={"event_hooks": {"request": [signed_by_stripe]}})
    event = StripeEvent.from_dict(json.loads(checkout_completed(me.tenant_id, str(me.id), "pro")))
    acknowledged = billing_webhook.sync(client=stripe, body=event)
    assert isinstance(acknowledged, WebhookAck) and acknowledged.duplicate is False
    assert auth_me.sync(client=user).tier == "pro"

    # Chat, answered by the offline demo model.
    answer = chat_send_message.sync_detailed(
        client=user, body=ChatRequest(message="Add a task to call Anna tomorrow, high priority")
    )
    assert answer.status_code == 200
    assert isinstance(answer.parsed, ChatResponse) and answer.parsed.agent == "task_agent"
    assert answer.parsed.actions[0].type_ == "create_record"

    # Storage: upload an encrypted record, read the same bytes back.
    sealed = b"\x8f\x02sealed-by-the-desktop-app\x00\xff" * 64
    checksum = hashlib.sha256(sealed).hexdigest()
    created = storage_create_record.sync_detailed(
        client=user,
        body=File(payload=io.BytesIO(sealed), mime_type="application/octet-stream"),
        x_table="notes",
        x_checksum=checksum,
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, RecordMetadata)
    fetched = storage_get_record.sync_detailed(client=user, record_id=created.parsed.id)
    assert fetched.status_code == 200
    assert fetched.parsed.payload.read() == sealed
    assert fetched.headers["X-Checksum"] == checksum

    # Backup: store one, list it.
    stored = backup_put_backup.sync_detailed(
        client=user,
        body=File(payload=io.BytesIO(sealed), mime_type="application/octet-stream"),
        x_backup_version="2025.3.1",
        x_backup_timestamp="2025-03-01T09:30:00Z",
        x_backup_checksum=checksum,
    )
    assert stored.status_code == 201, stored.content
    assert isinstance(stored.parsed, BackupInfo)
    history = backup_history.sync(client=user)
    assert isinstance(history, BackupHistory)
    assert [item.id for item in history.items] == [stored.parsed.id]

    # Quota status, as the signed-in user.
    status = quota_status.sync(client=user)
    assert isinstance(status, QuotaStatus) and status.identity == "user"
    assert status.daily.used == 1

    # A demo session: its id is the credential, sent as X-Demo-Session-Id.
    session = demo_create_session.sync(
        client=anonymous, body=CreateDemoSession(demo_account_type="freelancer")
    )
    visitor = AuthenticatedClient(
        base_url=base, token=session.session_id, prefix="", auth_header_name="X-Demo-Session-Id"
    )
    current = demo_current_session.sync(client=visitor)
    assert isinstance(current, DemoSessionInfo) and current.session_id == session.session_id
    workspace = demo_get_workspace.sync(client=anonymous, session_id=session.session_id)
    assert isinstance(workspace, Workspace) and isinstance(workspace.user_profile, PersonaProfile)
    demo_answer = chat_send_message.sync(
        client=visitor, body=ChatRequest(message="Mark the packaging mock-ups task as done")
    )
    assert isinstance(demo_answer, ChatResponse)
    [action] = demo_answer.actions
    assert action.id == "task_nw_packaging"
    applied = demo_apply_workspace_actions.sync(
        client=anonymous,
        session_id=session.session_id,
        # The chat answer's actions, as they come.
        body=WorkspaceActions(actions=demo_answer.actions),
    )
    assert isinstance(applied, Workspace)
    task = next(t for t in applied.tasks if t.id == "task_nw_packaging")
    assert task.status == "done"
    demo_quota = quota_status.sync(client=visitor)
    assert demo_quota.identity == "demo" and demo_quota.daily.used == 1

    # Errors parse into ErrorBody: a demo restriction, a 422 and a 401.
    refused = storage_delete_record.sync_detailed(client=visitor, record_id=created.parsed.id)
    assert refused.status_code == 403
    assert isinstance(refused.parsed, ErrorBody) and refused.parsed.error == "demo_restriction"
    invalid = auth_register.sync_detailed(
        client=anonymous, body=RegisterRequest(email="ada@example.com", password="short")
    )
    assert invalid.status_code == 422
    assert isinstance(invalid.parsed, ErrorBody) and invalid.parsed.error == "validation_error"
    assert "password" in invalid.parsed.message and invalid.parsed.request_id
    expired = auth_me.sync_detailed(
        client=AuthenticatedClient(base_url=base, token="eyJhbGciOiJIUzI1NiJ9.e30.invalid")
    )
    assert expired.status_code == 401
    assert isinstance(expired.parsed, ErrorBody) and expired.parsed.message
