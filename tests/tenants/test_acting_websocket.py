"""The chat WebSocket acts in the workspace `?tenant_id=` names, members only."""

from __future__ import annotations

import pytest
from httpx_ws import WebSocketDisconnect, aconnect_ws

from tests.chat.support import ANNA, collect, ws_client
from tests.support.builders import register
from tests.tenants.support import create_team

STREAM = "/api/v1/chat/stream"


async def test_a_member_chats_in_the_team_and_an_outsider_is_refused(app, client):
    owner = await register(client)
    outsider = await register(client)
    team = await create_team(client, owner)

    async with (
        ws_client(app) as wc,
        aconnect_ws(f"{STREAM}?token={owner.access_token}&tenant_id={team}", wc) as ws,
    ):
        await ws.send_json(ANNA)
        _, done = await collect(ws)
    assert done.get("done") is True, done

    async with ws_client(app) as wc:
        with pytest.raises(WebSocketDisconnect) as closed:
            async with aconnect_ws(
                f"{STREAM}?token={outsider.access_token}&tenant_id={team}", wc
            ) as ws:
                await ws.receive_json(timeout=10)
    # (Were `tenant_id` ignored, the outsider would chat in their own workspace.)
    assert closed.value.code == 1008
