"""The fast lane (gdos_master/fastlane.py) answers the API's plain reads exactly as Quart would.

Each request is sent twice to the same master, once with the lane on and once with it
off (every request through Quart's pipeline and the route wrapper), and the two answers
must agree: status, headers (all but the per-request id) and body, errors included.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from quart import Quart, request

from gdos_master.app import Master
from gdos_master.fastlane import FastLane
from gdos_sdk.client import AsyncClient

from .conftest import ADMIN_PASSWORD, token_for

pytestmark = pytest.mark.anyio

Answer = tuple[int, list[tuple[str, str]], bytes]


def _lane(app: Quart) -> FastLane:
    lane: FastLane = app.extensions["gdos_fastlane"]
    return lane


async def _send(app: Quart, method: str, path: str, headers: dict[str, str]) -> Answer:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://master.test") as http:
        answer = await http.request(method, path, headers=headers)
    kept = sorted((k, v) for k, v in answer.headers.multi_items() if k.lower() != "x-request-id")
    return answer.status_code, kept, answer.content


async def _both(app: Quart, path: str, headers: dict[str, str], method: str = "GET") -> Answer:
    """The answer with the lane on, after checking that Quart gives the same one."""
    lane = _lane(app)
    lane.enabled = False
    try:
        slow = await _send(app, method, path, headers)
    finally:
        lane.enabled = True
    fast = await _send(app, method, path, headers)
    assert fast == slow, path
    return fast


@pytest.fixture
async def quart_requests(app: Quart) -> list[str]:
    """The requests that went through Quart's pipeline while the lane was on."""
    seen: list[str] = []

    async def record() -> None:
        if _lane(app).enabled:
            seen.append(f"{request.method} {request.path}")

    app.before_request(record)
    return seen


async def _login_cookie(app: Quart) -> str:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://master.test") as http:
        answer = await http.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        answer.raise_for_status()
        return "; ".join(f"{k}={v}" for k, v in http.cookies.items())


async def test_reads_agree_with_quart_answers_and_errors_alike(
    app: Quart, admin: AsyncClient, quart_requests: list[str]
) -> None:
    planned = await admin.plan_node("web-1", alias="front", labels={"tier": "web"})
    await admin.plan_node("db-1")
    admin_token = (await admin.create_token("lane")).secret
    viewer_token = await token_for(admin, app, "viewer")
    bearer = {"Authorization": f"Bearer {admin_token}"}
    viewer = {"Authorization": f"Bearer {viewer_token}"}
    browser = {"Cookie": await _login_cookie(app)}
    quart_requests.clear()

    status, headers, body = await _both(app, "/api/v1/nodes", bearer)
    assert status == 200 and b'"hostname":"web-1"' in body and b'"hostname":"db-1"' in body
    assert ("content-type", "application/json") in headers
    assert ("x-content-type-options", "nosniff") in headers  # added around both paths
    assert (await _both(app, "/api/v1/nodes?search=web", bearer))[2].count(b'"hostname"') == 1
    assert (await _both(app, "/api/v1/nodes?status=planned&search=", bearer))[0] == 200
    assert (await _both(app, f"/api/v1/nodes/{planned.id}", bearer))[0] == 200
    assert (await _both(app, "/api/v1/systems", viewer))[0] == 200
    assert (await _both(app, "/api/v1/audit?limit=5&offset=0", bearer))[0] == 200
    assert (await _both(app, "/api/v1/alerts/rules", viewer))[0] == 200
    assert (await _both(app, "/api/v1/rollouts", viewer))[0] == 200
    assert (await _both(app, "/api/v1/auth/me", browser))[0] == 200
    assert (await _both(app, "/api/v1/health", {}))[0] == 200

    # Errors: the same status and the same body naming the problem.
    status, _, body = await _both(app, "/api/v1/nodes?status=sleeping", bearer)
    assert status == 422 and b"query.status" in body
    status, _, body = await _both(app, "/api/v1/alerts/events?limit=lots&limit=2", viewer)
    assert status == 422 and b"query.limit" in body
    assert (await _both(app, "/api/v1/nodes/no-such-node", bearer))[0] == 404
    assert (await _both(app, "/api/v1/nodes", {}))[0] == 401
    assert (await _both(app, "/api/v1/nodes", {"Authorization": "Bearer gdos_nope"}))[0] == 401
    status, _, body = await _both(app, "/api/v1/users", viewer)
    assert status == 403 and b"admin role" in body
    assert quart_requests == [], "every read above was answered by the lane"

    # What the lane leaves to Quart, answered as before: a redirect, no such route, a
    # download, another method, a WebSocket route, a body on a GET.
    assert (await _both(app, "/api/v1/nodes/", bearer))[0] in (301, 308, 404)
    assert (await _both(app, "/api/v1/no-such-route", bearer))[0] == 404
    assert (await _both(app, "/api/v1/nodes", bearer, method="HEAD"))[0] == 200
    assert (await _both(app, "/api/v1/live", bearer))[0] == 400
    assert quart_requests, "Quart answered those"


async def test_a_user_who_must_change_the_password_is_refused_on_the_lane_too(
    app: Quart, admin: AsyncClient, master: Master
) -> None:
    token = await token_for(admin, app, "operator")
    master.db.execute(
        "UPDATE users SET must_change_password = 1 WHERE username = ?", ("user-operator",)
    )
    status, _, body = await _both(app, "/api/v1/nodes", {"Authorization": f"Bearer {token}"})
    assert status == 403 and b"password_change_required" in body


async def test_a_handler_that_fails_gives_the_same_500_and_log_line(
    app: Quart,
    admin: AsyncClient,
    master: Master,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = (await admin.create_token("lane")).secret

    def broken(**_: Any) -> str:
        raise RuntimeError("a bug in the node list")

    monkeypatch.setattr(master.nodes, "list_json", broken)
    with caplog.at_level(logging.ERROR, logger="gdos.master"):
        status, _, body = await _both(app, "/api/v1/nodes", {"Authorization": f"Bearer {token}"})
    assert status == 500 and b"internal_error" in body and b"a bug" not in body
    lines = [r for r in caplog.records if r.getMessage() == "unhandled error on GET /api/v1/nodes"]
    assert len(lines) == 2 and all(r.exc_info for r in lines)  # one per path
