"""A TypeScript client typed from the live OpenAPI document compiles under `tsc --strict`.

The app serves `/openapi.json`; openapi-typescript turns it into
`tests/clients/js/generated/schema.d.ts`, and `tsc --strict` checks the desktop
client's API layer (`tests/clients/js/src/client.ts`) against it: error bodies read
as `ErrorBody` (`e.message`) on every operation, and the headers the client sends
and reads declared where it uses them. Node and the pinned npm packages are
installed when missing (tests/support/node.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from tests.support.debian import Unavailable
from tests.support.node import JS_DIR, bin_path, ensure_node_modules, node
from tests.support.settings import make_settings

GENERATED = JS_DIR / "generated" / "schema.d.ts"
TOOL_TIMEOUT = 300


@pytest.fixture(scope="module")
def node_modules() -> Path:
    try:
        return ensure_node_modules()
    except Unavailable as exc:
        pytest.skip(str(exc))


async def live_document(tmp_path: Path) -> dict:
    app = create_app(make_settings("", tmp_path / "data"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node(), str(bin_path(tool)), *args],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
    )


async def test_the_client_compiles_against_types_generated_from_the_live_document(
    node_modules: Path, tmp_path: Path
) -> None:
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(await live_document(tmp_path)))
    GENERATED.parent.mkdir(exist_ok=True)
    generated = run("openapi-typescript", str(document), "--output", str(GENERATED))
    assert generated.returncode == 0, generated.stdout + generated.stderr
    print(generated.stdout.strip())
    # Warnings (⚠) and errors (✘) go to stderr; a clean run prints nothing there.
    assert generated.stderr == "", generated.stderr

    compiled = run("tsc", "--project", ".", "--strict", "--pretty", "false")
    print(f"tsc --strict: exit {compiled.returncode}", compiled.stdout.strip())
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    assert compiled.stdout == compiled.stderr == ""
