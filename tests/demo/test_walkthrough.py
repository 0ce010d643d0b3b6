"""The README's "Try it with curl" block, run verbatim against a real server.

A uvicorn process serves the app on default settings (offline demo model, no keys)
with a fresh data directory and a migrated database; the block from the README
runs under bash with only the port changed, so the walkthrough cannot rot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.support.servers import START_DEADLINE
from tests.support.storage import free_port

pytestmark = pytest.mark.usefixtures("backend")

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- walkthrough"
README_HOST = "localhost:8000"


def walkthrough_block(readme: str) -> str:
    """The first ```bash block after the walkthrough marker."""
    _, found, rest = readme.partition(MARKER)
    assert found, "README.md lost its walkthrough marker"
    match = re.search(r"```bash\n(.*?)\n```", rest, re.S)
    assert match is not None, "no bash block after the walkthrough marker"
    return match.group(1)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    # Default settings, as `make run` has them; only where the data lives differs.
    env |= {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "data")}
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:create_app",
            "--app-dir",
            str(ROOT),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-proxy-headers",
        ],
        cwd=tmp_path,  # no .env of the working tree, and ./data is fresh
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_DEADLINE
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough needs curl")
def test_the_readme_walkthrough_works_verbatim(server: str) -> None:
    block = walkthrough_block((ROOT / "README.md").read_text())
    assert README_HOST in block
    script = block.replace(README_HOST, server)
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr}"

    # 1. accounts
    assert '"demo_account_type":"freelancer"' in out
    assert '"demo_account_type":"product_team"' in out
    # 2. a session was started and its id captured
    sid = re.search(r"^session: (demo_\S+)$", out, re.M)
    assert sid is not None, out
    # 3. chat in the session acts on the template's task, with the LLM unit
    chat = next(line for line in out.splitlines() if line.startswith('{"response"'))
    assert '"id":"task_nw_packaging"' in chat and '"demo":false' in chat
    # 4. the quota status of that session
    assert re.search(r'"identity":"demo".*"daily":\{"limit":10,"used":1,"remaining":9\}', out)
    assert '"llm":{"limit":1,"used":1,"remaining":0' in out
    # 5. extended once
    assert f'"session_id":"{sid.group(1)}"' in out and '"extensions_used":1' in out
    # 6. refused
    assert '"error":"demo_restriction"' in out and "HTTP 403" in out
    # 7. the fallback, marked in the header and the body
    assert re.search(r"^x-demo-mode: true\r?$", out, re.M | re.I), out
    fallback = [line for line in out.splitlines() if line.startswith('{"response"')][-1]
    assert '"demo":true' in fallback and '"agent":"task_agent"' in fallback
    # 8. a playbook run on the server: the run and both steps succeeded, and it
    #    produced the task's create_record action
    assert re.search(r"^run: [0-9a-f]{32}$", out, re.M), out
    statuses = re.findall(r'^"status":"([a-z]+)","(?:demo|credits)"$', out, re.M)
    assert statuses[-3:] == ["succeeded"] * 3, out
    assert '"type":"create_record","table":"tasks"' in out
