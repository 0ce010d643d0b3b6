"""The API from a real browser: Debian's Chromium, headless, driven by playwright-core.

The app runs as a real server (`adiuva serve`) on 127.0.0.1; the pages
(tests/clients/js/pages) come from a static server on other origins, as an Electron
renderer's dev server would serve them, and from a file, as a packaged renderer
loads them:

- `http://localhost:<p>` (another site): registers and logs in with `fetch`, streams
  a chat over the WebSocket (the offline demo model) and measures the time to the
  first token after `send()`, then chats until the daily quota refuses and reads
  `X-Quota-Reset` from the 429;
- `http://127.0.0.1:<p>` (same site, another origin): the anonymous visitor's cookie
  is set and keeps the visitor one identity;
- `http://127.0.0.1:<q>` (not in `CORS_ORIGINS`): fetch fails, the socket is refused;
- `file://` (`Origin: null`): bearer credentials work, credentialed CORS does not.

Chromium and the npm packages are installed when missing (tests/support/chromium.py,
tests/support/node.py); without root or apt-get the test is skipped, saying why.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.chromium import chromium
from tests.support.databases import PostgresTemplate, SQLiteTemplate
from tests.support.debian import Unavailable
from tests.support.node import JS_DIR, ensure_node_modules, node
from tests.support.servers import base_env, start_single

PAGES = JS_DIR / "pages"
DRIVE_TIMEOUT = 300
DAILY_UNITS = 2  # a free account's units per day here: the stream, one REST chat, then 429


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticPages:
    """The pages on a loopback port of their own: another origin than the API's."""

    def __init__(self) -> None:
        handler = partial(QuietHandler, directory=str(PAGES))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def tools() -> tuple[str, str]:
    try:
        browser = chromium()
        ensure_node_modules()
        return browser, node()
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def observed(
    tools: tuple[str, str],
    database_template: SQLiteTemplate | PostgresTemplate,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """What each page observed, in one browser run against one server."""
    browser, node_binary = tools
    allowed, other = StaticPages(), StaticPages()
    workdir = tmp_path_factory.mktemp("browser")
    database_url = database_template.clone(workdir)
    try:
        env = base_env(
            database_url,
            workdir / "data",
            CORS_ORIGINS=f"http://localhost:{allowed.port},http://127.0.0.1:{allowed.port},null",
            RATE_LIMIT_DAILY_FREE=DAILY_UNITS,
        )
        server = start_single(env, workdir / "server")
        try:
            config = {
                "chromium": browser,
                "endpoints": {"api": server.base_url, "ws": server.ws_url},
                "runs": [
                    {
                        "name": "cross_site",
                        "url": f"http://localhost:{allowed.port}/index.html",
                        "flow": "signedIn",
                    },
                    {
                        "name": "same_site",
                        "url": f"http://127.0.0.1:{allowed.port}/index.html",
                        "flow": "anonymousVisitor",
                    },
                    {
                        "name": "not_allowed",
                        "url": f"http://127.0.0.1:{other.port}/index.html",
                        "flow": "notAllowed",
                    },
                    {
                        "name": "file",
                        "url": (PAGES / "index.html").as_uri(),
                        "flow": "fileRenderer",
                    },
                ],
            }
            result = subprocess.run(
                [node_binary, str(JS_DIR / "drive.mjs"), json.dumps(config)],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=DRIVE_TIMEOUT,
            )
            assert result.returncode == 0, (
                f"{result.stdout}\n{result.stderr}\nserver log:\n{server.log_text()[-4000:]}"
            )
            yield json.loads(result.stdout)
        finally:
            server.stop()
    finally:
        allowed.stop()
        other.stop()
        database_template.drop(database_url)


def page_of(observed: dict[str, Any], name: str) -> dict[str, Any]:
    """What one page observed; fails with its error and console if its flow broke."""
    page = observed[name]
    assert "failure" not in page, f"{page['failure']}\nconsole: {page['console']}"
    return page


def test_a_page_on_another_site_signs_in_and_streams_a_chat(observed: dict[str, Any]) -> None:
    page = page_of(observed, "cross_site")
    assert page["origin"].startswith("http://localhost:")
    assert (page["registerStatus"], page["loginStatus"], page["meStatus"]) == (201, 200, 200)
    # Exposed headers are readable (a page reads null for the others).
    assert page["meRequestId"] and page["meRateLimitRemaining"] is not None
    stream = page["stream"]
    assert stream["opened"] and not stream["errorEvent"]
    assert stream["tokens"] > 0 and stream["done"]["done"] is True
    assert stream["done"]["response"] and stream["closeCode"] == 1000
    print(
        f"\nbrowser, cross-site page: first token {stream['firstTokenMs']:.1f} ms after send(), "
        f"done after {stream['doneMs']:.1f} ms ({stream['tokens']} token frames)"
    )


def test_a_page_reads_the_quota_reset_of_a_refusal(observed: dict[str, Any]) -> None:
    page = page_of(observed, "cross_site")
    assert [chat["status"] for chat in page["chats"]] == [200] * (DAILY_UNITS - 1)
    refusal = page["refusal"]
    assert refusal is not None, page["chats"]
    assert refusal["status"] == 429 and refusal["error"] == "daily_quota"
    assert refusal["quotaReset"] is not None and refusal["quotaReset"].endswith("Z")
    assert refusal["quotaReset"] in refusal["message"]
    assert int(refusal["retryAfter"]) >= 1 and refusal["requestId"]


def test_the_cookie_keeps_a_same_site_visitor_one_identity(observed: dict[str, Any]) -> None:
    page = page_of(observed, "same_site")
    assert page["origin"].startswith("http://127.0.0.1:")
    assert page["chatStatus"] == 200
    (cookie,) = [c for c in page["cookies"] if c["name"] == "demo_session_id"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    # Another Accept-Language is another fingerprint: only the cookie makes it the
    # visitor who chatted.
    assert page["usedWithCookie"] == 1
    assert page["usedWithoutCookie"] == 0


def test_a_page_from_an_origin_not_allowed_is_refused(observed: dict[str, Any]) -> None:
    page = page_of(observed, "not_allowed")
    assert page["simpleGet"]["failed"] == "TypeError"
    assert page["jsonPost"]["failed"] == "TypeError"
    stream = page["stream"]
    # Browsers show a refused handshake as an error and an abnormal close, nothing more.
    assert not stream["opened"] and stream["errorEvent"] and stream["closeCode"] == 1006
    assert stream["tokens"] == 0


def test_a_renderer_loaded_from_a_file_uses_bearer_credentials_only(
    observed: dict[str, Any],
) -> None:
    page = page_of(observed, "file")
    assert page["origin"] == "null"
    assert (page["registerStatus"], page["loginStatus"]) == (201, 200)
    stream = page["stream"]
    assert stream["opened"] and stream["done"]["done"] is True and stream["closeCode"] == 1000
    assert (page["quotaIdentity"], page["quotaUsed"]) == ("user", 1)
    # No credentialed CORS for the origin every file page and sandboxed frame shares.
    assert page["credentialed"]["failed"] == "TypeError"
    assert not [c for c in page["cookies"] if c["name"] == "demo_session_id"]
    print(f"\nbrowser, file renderer: first token {stream['firstTokenMs']:.1f} ms after send()")
