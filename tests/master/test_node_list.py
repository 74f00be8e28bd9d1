"""``GET /nodes`` from rows rendered once per change, in one statement (issue 15, item 7)."""

from __future__ import annotations

import json
import time

import pytest

from gdos_master.app import Master
from gdos_sdk.client import AsyncClient
from gdos_sdk.codec import unstructure
from gdos_sdk.models import NodePatch, PlannedNodeCreate

from .conftest import statements_run
from .test_live import online_node, sample

pytestmark = pytest.mark.anyio


def listed(master: Master, **query: str) -> object:
    return json.loads(master.nodes.list_json(**query))


def reference(master: Master, **query: str) -> object:
    return unstructure(master.nodes.list_nodes(**query))


async def test_the_json_list_is_the_model_list_after_every_change(
    master: Master, admin: AsyncClient
) -> None:
    web = await online_node(master, "web-1")
    await online_node(master, "web-2")
    master.nodes.plan(PlannedNodeCreate(hostname="db-1", addresses=["10.0.0.9"]))
    queries: list[dict[str, str]] = [
        {},
        {"status": "online"},
        {"status": "planned"},
        {"search": "WEB"},
        {"search": "10.0.0.9"},
    ]
    for query in queries:
        assert listed(master, **query) == reference(master, **query)
    master.fleet.heartbeat(web, [sample(time.time() + 1, cpu=77.0)], [])
    master.nodes.patch(web, NodePatch(alias="front"))
    for query in queries:
        assert listed(master, **query) == reference(master, **query)
    first = listed(master)
    assert isinstance(first, list)
    row = next(r for r in first if r["id"] == web)
    assert row["alias"] == "front" and row["latest"]["cpu_percent"] == 77.0
    conn = master.fleet.nodes[web].connection
    assert conn is not None
    await master.fleet.disconnect(conn)
    row = next(r for r in listed(master) if r["id"] == web)  # type: ignore[attr-defined]
    assert row["status"] == "offline" and row["latest"] is None
    await master.nodes.delete(web, force=True)
    assert [r["hostname"] for r in listed(master)] == ["db-1", "web-2"]  # type: ignore[attr-defined]
    assert [n.hostname for n in await admin.list_nodes()] == ["db-1", "web-2"]


async def test_listing_reads_the_database_once_and_again_only_after_a_write(
    master: Master,
) -> None:
    for i in range(3):
        await online_node(master, f"web-{i}")
    with statements_run(master.db) as statements:
        master.nodes.list_json()
        assert len(statements) == 1, statements  # nodes and instance counts together
        master.nodes.list_json(status="online", search="web")
        master.nodes.list_json()
        assert len(statements) == 1, statements  # nothing written since: no read
        master.nodes.patch(master.nodes.list_nodes()[0].id, NodePatch(alias="changed"))
        statements.clear()
        assert "changed" in master.nodes.list_json()
        assert len(statements) == 1, statements
