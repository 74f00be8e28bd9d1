"""Finding 12: deeply nested JSON from a client is a readable 400 (or error frame), never a 500.

Before the fix ``[`` x 5000 to ``/auth/login`` answered 500 with a RecursionError; the live
channel's receiving task died on such a frame; a few hundred levels got past the parser and
broke the code that walks a body (redaction for the audit entry).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_sdk.client import AsyncClient
from gdos_sdk.errors import ProtocolError, ValidationError

pytestmark = pytest.mark.anyio

DEEP = "[" * 5000
NESTED = json.dumps(
    {"username": "admin", "password": "x", "extra": json.loads("[" * 300 + "]" * 300)}
)


def _http(app: Quart, token: str | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(transport=transport, base_url="http://m/api/v1", headers=headers)


@pytest.mark.parametrize("body", [DEEP, NESTED], ids=["5000-open-brackets", "300-levels"])
async def test_a_deep_login_body_is_a_400(app: Quart, master: Master, body: str) -> None:
    async with _http(app) as http:
        response = await http.post("/auth/login", content=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert "nests deeper than 64 levels" in error["message"]
    assert error["details"][0]["path"] == "$"


async def test_a_deep_body_to_an_authenticated_route_is_a_400(
    admin: AsyncClient, app: Quart, master: Master
) -> None:
    token = (await admin.create_token("t")).secret
    before = master.db.scalar("SELECT COUNT(*) FROM systems")
    async with _http(app, token) as http:
        for body in (
            DEEP,
            json.dumps({"name": "a", "description": json.loads("[" * 100 + "]" * 100)}),
        ):
            response = await http.post("/systems", content=body)
            assert response.status_code == 400, response.text
    assert master.db.scalar("SELECT COUNT(*) FROM systems") == before
    # 64 levels are fine as far as parsing goes (the model then says what it expected).
    async with _http(app, token) as http:
        ok_depth = json.dumps({"name": "a", "description": json.loads("[" * 60 + "]" * 60)})
        assert (await http.post("/systems", content=ok_depth)).status_code == 422


async def test_a_deep_live_frame_is_an_error_frame_and_the_socket_lives_on(
    admin: AsyncClient, app: Quart
) -> None:
    token = (await admin.create_token("t")).secret
    headers = {"Authorization": f"Bearer {token}"}
    async with app.test_client().websocket("/api/v1/live", headers=headers) as ws:
        await ws.send(DEEP)
        error: Any = json.loads(await ws.receive())
        assert "nests deeper" in error["error"]["message"]
        await ws.send(json.dumps({"op": "subscribe", "topic": "fleet"}))
        snapshot: Any = json.loads(await ws.receive())
        assert snapshot["topic"] == "fleet" and snapshot["data"]["snapshot"] is True


def test_deep_terminal_and_agent_frames_are_refused_cleanly() -> None:
    from gdos_master.terminal import _json as worker_stream_frame
    from gdos_sdk.protocol import decode
    from gdos_sdk.terminal import parse_control

    with pytest.raises(ValidationError, match="control frames must be JSON objects"):
        parse_control(DEEP)  # a browser's terminal frame
    with pytest.raises(ValidationError):
        parse_control(json.dumps({"op": "resize", "rows": json.loads("[" * 100 + "]" * 100)}))
    with pytest.raises(ProtocolError, match="not JSON"):
        decode(DEEP)  # an agent frame
    with pytest.raises(ValueError):
        worker_stream_frame(DEEP)  # a worker's terminal stream frame
