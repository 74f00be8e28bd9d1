"""The join token cannot fill the database with nodes waiting for approval.

The join token is one secret for the whole cluster. Before ``auth.max_pending_nodes`` its
holder could create any number of pending nodes (rows that stay until an admin deletes
them); now a join beyond the cap is refused, names the limit, and writes nothing.
"""

from __future__ import annotations

import uuid

import attrs
import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_sdk.client import AsyncClient
from gdos_sdk.config import MasterSettings
from gdos_sdk.protocol import ErrorMessage, Welcome

from ..master.test_join import JOIN, hello, join

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: MasterSettings) -> MasterSettings:
    auth = attrs.evolve(settings.auth, join_token=JOIN, require_approval=True, max_pending_nodes=3)
    return attrs.evolve(settings, auth=auth)


async def test_joins_beyond_the_pending_cap_are_refused(
    app: Quart, master: Master, admin: AsyncClient
) -> None:
    waiting = [str(uuid.uuid4()) for _ in range(3)]
    for i, node_id in enumerate(waiting):
        answer = await join(app, JOIN, hello(node_id, f"host-{i}"), confirm=True)
        assert isinstance(answer, Welcome), answer
    extra = str(uuid.uuid4())
    refused = await join(app, JOIN, hello(extra, "host-extra"), confirm=False)
    assert isinstance(refused, ErrorMessage), refused
    assert refused.code == "rate_limited"
    assert "auth.max_pending_nodes" in refused.message and "3" in refused.message
    assert master.db.scalar("SELECT COUNT(*) FROM nodes WHERE id = ?", (extra,)) == 0
    # An approved node no longer waits: there is room again.
    await admin.approve_node(waiting[0])
    answer = await join(app, JOIN, hello(extra, "host-extra"), confirm=True)
    assert isinstance(answer, Welcome), answer
    assert master.db.scalar("SELECT COUNT(*) FROM nodes WHERE approved = 0") == 3
