"""Every HTTP request gets an id, in X-Request-ID and in the log lines it causes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from quart import Quart

from gdos_master.routing import Api, Ctx
from gdos_sdk.logformat import configure_logging

pytestmark = pytest.mark.anyio


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    configure_logging("info", "json", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def records(buffer: io.StringIO, message: str) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in buffer.getvalue().splitlines()]
    return [r for r in found if r["message"] == message]


async def test_log_lines_of_a_request_carry_its_ids(app: Quart, lines: io.StringIO) -> None:
    # A route of the app's own kind (declared with Api.route, like every route that names a
    # node or an instance) that logs, so the test sees what any handler's log gets.
    probes = Api()

    @probes.route(
        "/probe/nodes/<node_id>/instances/<instance_id>", "GET", summary="probe", tag="t", role=None
    )
    async def probe(ctx: Ctx, node_id: str, instance_id: str) -> None:
        logging.getLogger("gdos.master.probe").warning("probing")

    probes.register(app)

    client = app.test_client()
    first = await client.get("/api/v1/probe/nodes/n-1/instances/i-2")
    second = await client.get("/api/v1/probe/nodes/n-3/instances/i-4")
    one, two = records(lines, "probing")
    assert one["request_id"] == first.headers["X-Request-ID"]
    assert two["request_id"] == second.headers["X-Request-ID"]
    assert one["request_id"] != two["request_id"]
    assert (one["node_id"], one["instance_id"]) == ("n-1", "i-2")
    assert (two["node_id"], two["instance_id"]) == ("n-3", "i-4")


async def test_a_proxys_request_id_is_kept_when_plain(app: Quart, lines: io.StringIO) -> None:
    client = app.test_client()
    kept = await client.get("/api/v1/health", headers={"X-Request-ID": "edge-42.a"})
    assert kept.headers["X-Request-ID"] == "edge-42.a"
    odd = await client.get("/api/v1/health", headers={"X-Request-ID": 'x" y<script>'})
    assert odd.headers["X-Request-ID"] != 'x" y<script>'
    assert len(odd.headers["X-Request-ID"]) == 16
    refused = await client.get("/api/v1/nodes")  # errors carry the id too
    assert refused.status_code == 401 and refused.headers["X-Request-ID"]
