"""A demo session is an identity of its own for the tier rate limit (SPEC §3.2).

Its calls — by `X-Demo-Session-Id`, by its session token, by its id in a
`/demo/sessions/{id}` path — count in one window of the session's, sized like the
free tier's, independent of the anonymous callers of the same address.
"""

from __future__ import annotations

import pytest

from tests.support.builders import client_for
from tests.support.demo import SESSIONS, header, start_session

pytestmark = pytest.mark.usefixtures("backend")

LIMIT = 6
QUOTA = "/api/v1/quota/status"
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}


@pytest.fixture
def extra_settings() -> dict[str, object]:
    return {"RATE_LIMIT_FREE_PER_MINUTE": LIMIT}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_browser_tab_on_the_same_machine_does_not_spend_the_session(app):
    async with (
        client_for(app, "192.0.2.77") as terminal,
        client_for(app, "192.0.2.77", headers=BROWSER) as tab,
    ):
        session = await start_session(terminal)  # one of the address's anonymous requests
        sid = session["session_id"]
        # The tab spends the rest of the address's anonymous window.
        tab_statuses = [(await tab.get("/api/v1/demo/accounts")).status_code for _ in range(LIMIT)]
        assert tab_statuses == [200] * (LIMIT - 1) + [429]

        # The walkthrough's session steps: each style of credential, one window.
        steps = [
            await terminal.get(QUOTA, headers=header(sid)),
            await terminal.post(f"{SESSIONS}/{sid}/extend"),
            await terminal.get(f"{SESSIONS}/{sid}"),
            await terminal.get(f"{SESSIONS}/current", headers=bearer(session["session_token"])),
            await terminal.get(f"{SESSIONS}/{sid}/workspace"),
        ]
        assert [r.status_code for r in steps] == [200] * 5, [r.text for r in steps]
        assert [r.headers["ratelimit-remaining"] for r in steps] == ["5", "4", "3", "2", "1"]
        assert {r.headers["ratelimit-limit"] for r in steps} == {str(LIMIT)}

        last = await terminal.get(QUOTA, headers=header(sid))
        assert last.status_code == 200 and last.headers["ratelimit-remaining"] == "0"
        refused = await terminal.get(f"{SESSIONS}/{sid}")
        assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60

        # The anonymous window of the address is still the tab's, spent, on its own.
        assert (await tab.get("/api/v1/demo/accounts")).status_code == 429


async def test_two_sessions_of_one_address_have_a_window_each(app):
    async with client_for(app, "192.0.2.78") as c:
        first, second = await start_session(c), await start_session(c)
        for _ in range(LIMIT):
            assert (await c.get(QUOTA, headers=header(first["session_id"]))).status_code == 200
        assert (await c.get(QUOTA, headers=header(first["session_id"]))).status_code == 429
        other = await c.get(QUOTA, headers=header(second["session_id"]))
        assert other.status_code == 200 and other.headers["ratelimit-remaining"] == str(LIMIT - 1)


async def test_a_session_gone_by_path_is_the_routes_answer_in_the_address_window(app):
    async with client_for(app, "192.0.2.79") as c:
        missing = await c.get(f"{SESSIONS}/demo_{'x' * 32}")
        assert missing.status_code == 404
        # Counted like any anonymous request of the address (the session creation was one).
        assert missing.headers["ratelimit-remaining"] == str(LIMIT - 1)


async def test_the_window_store_never_holds_a_session_id(app):
    async with client_for(app, "192.0.2.80") as c:
        session = await start_session(c)
        assert (await c.get(QUOTA, headers=header(session["session_id"]))).status_code == 200
    keys = " ".join(str(key) for key in app.state.limiter_storage.events)
    assert "demo:ds_" in keys
    assert session["session_id"] not in keys
    assert session["session_id"].removeprefix("demo_") not in keys
