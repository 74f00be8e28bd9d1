"""Two masters on one PostgreSQL database: a node joined through one connects to the other.

A worker given several masters (``-master A,B``) moves to B when A stops answering, with
the credential A gave it, whatever state its join was left in. These run two in-process
masters on the same database (PostgreSQL only: SQLite is one master's file).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from quart import Quart
from quart.testing.connections import WebsocketResponseError

from gdos_master.app import Master, create_app
from gdos_sdk.config import MasterSettings
from gdos_sdk.protocol import ErrorMessage, Welcome

from .conftest import ADMIN_PASSWORD, client_for
from .test_join import JOIN, hello, join

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("db_engine", ["postgresql"])]


@pytest.fixture
async def app_b(settings: MasterSettings, tmp_path: Path) -> AsyncIterator[Quart]:
    """Master B: the same database and package folder as ``app`` (master A), its own data."""
    server = attrs.evolve(settings.server, data_dir=str(tmp_path / "data-b"))
    storage = attrs.evolve(settings.storage, local_dir=str(settings.storage_dir))
    other = create_app(attrs.evolve(settings, server=server, storage=storage))
    async with other.test_app():
        yield other


def master_of(app: Quart) -> Master:
    found: Master = app.extensions["gdos"]
    return found


async def listed(app: Quart) -> dict[str, str]:
    """Node id -> status, as GET /nodes on ``app`` shows them."""
    async with client_for(app) as client:
        await client.login("admin", ADMIN_PASSWORD)
        return {n.id: n.status.value for n in await client.list_nodes()}


async def test_a_node_joined_through_a_connects_to_b_with_its_credential(
    app: Quart, app_b: Quart
) -> None:
    before = await listed(app_b)  # B has read (and cached) the node list
    node_id = str(uuid.uuid4())
    joined = await join(app, JOIN, hello(node_id), confirm=True)
    assert isinstance(joined, Welcome) and joined.credential is not None
    assert node_id not in before
    # A is gone; the worker dials B with the credential A gave it.
    again = await join(app_b, joined.credential, hello(node_id), confirm=False)
    assert isinstance(again, Welcome) and again.node_id == node_id and again.credential is None
    assert again.approved
    assert node_id in await listed(app_b)


async def test_a_join_left_unconfirmed_by_a_is_confirmed_by_b(app: Quart, app_b: Quart) -> None:
    node_id = str(uuid.uuid4())
    # A sent the welcome and died before the worker's first frame reached it.
    joined = await join(app, JOIN, hello(node_id), confirm=False)
    assert isinstance(joined, Welcome) and joined.credential is not None
    again = await join(app_b, joined.credential, hello(node_id), confirm=False)
    assert isinstance(again, Welcome) and again.credential is None
    # Confirmed on the shared database: neither master lets the join token take the node.
    for either in (app, app_b):
        refused = await join(either, JOIN, hello(node_id), confirm=False)
        assert isinstance(refused, ErrorMessage) and "already joined" in refused.message


async def test_a_welcome_lost_with_a_is_made_good_by_b(app: Quart, app_b: Quart) -> None:
    node_id = str(uuid.uuid4())
    # A processed the hello but the worker never read its welcome: it has no credential
    # and tries B with the join token.
    lost = await join(app, JOIN, hello(node_id), confirm=False)
    assert isinstance(lost, Welcome) and lost.credential is not None
    fresh = await join(app_b, JOIN, hello(node_id), confirm=True)
    assert isinstance(fresh, Welcome) and fresh.node_id == node_id
    assert fresh.credential is not None and fresh.credential != lost.credential
    # Only the credential the worker holds connects it, to either master.
    for either in (app, app_b):
        with pytest.raises(WebsocketResponseError):
            await join(either, lost.credential, hello(node_id), confirm=False)
        assert isinstance(
            await join(either, fresh.credential, hello(node_id), confirm=False), Welcome
        )


async def test_a_node_deleted_through_a_cannot_connect_to_b(app: Quart, app_b: Quart) -> None:
    node_id = str(uuid.uuid4())
    joined = await join(app, JOIN, hello(node_id), confirm=True)
    assert isinstance(joined, Welcome) and joined.credential is not None
    # B has let the node in once (and may remember its credential) ...
    assert isinstance(await join(app_b, joined.credential, hello(node_id), confirm=True), Welcome)
    # ... then an admin deletes the node through A, which B does not hear of.
    await master_of(app).nodes.delete(node_id, force=True)
    with pytest.raises(WebsocketResponseError):
        await join(app_b, joined.credential, hello(node_id), confirm=False)
