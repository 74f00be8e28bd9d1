"""Several masters: a user's rights changed on one master reach that user's sockets on another
at once (``gdos.account`` on the bus), not at the other master's periodic re-check."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gdos_master import live
from gdos_master.app import create_app
from gdos_master.bus import LocalBus, LocalNetwork
from gdos_master.live import LiveHub
from gdos_sdk.config import MasterAuth, MasterCluster, MasterDatabase, MasterServer, MasterSettings

pytestmark = pytest.mark.anyio

ADMIN = {"username": "admin", "password": "admin-password-1"}


def _settings(tmp_path: Path, db_url: str, name: str) -> MasterSettings:
    return MasterSettings(
        server=MasterServer(data_dir=str(tmp_path / name)),
        database=MasterDatabase(url=db_url),
        cluster=MasterCluster(master_id=name, leader_ttl=5.0),
        auth=MasterAuth(admin_password=ADMIN["password"], password_cost=14),
    )


@pytest.mark.parametrize("db_engine", ["postgresql"])
async def test_a_role_lowered_on_master_a_closes_the_live_socket_on_master_b_at_once(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "REAUTH_INTERVAL", 600.0)  # the periodic re-check plays no part
    network = LocalNetwork()
    app_a = create_app(_settings(tmp_path, db_url, "a"), bus=LocalBus("a", network))
    app_b = create_app(_settings(tmp_path, db_url, "b"), bus=LocalBus("b", network))
    async with app_a.test_app(), app_b.test_app():
        on_a, on_b = app_a.test_client(), app_b.test_client()
        assert (await on_a.post("/api/v1/auth/login", json=ADMIN)).status_code == 200
        csrf = next(c.value for c in on_a.cookie_jar or () if c.name == "gdos_csrf")
        answer = await on_a.post(
            "/api/v1/users",
            json={"username": "ops", "password": "password-1234", "role": "operator"},
            headers={"X-CSRF-Token": csrf},
        )
        assert answer.status_code == 201, await answer.get_data()
        user_id = (await answer.get_json())["id"]
        login = {"username": "ops", "password": "password-1234"}
        assert (await on_b.post("/api/v1/auth/login", json=login)).status_code == 200
        hub: LiveHub = app_b.extensions["gdos_live"]
        async with on_b.websocket("/api/v1/live", headers={"Origin": "http://localhost"}) as ws:
            await ws.send_json({"op": "subscribe", "topic": "fleet"})
            await asyncio.wait_for(ws.receive(), 10)
            (socket,) = hub.clients
            assert socket.principal.username == "ops" and not socket.closing.is_set()

            lowered = time.monotonic()
            answer = await on_a.patch(
                f"/api/v1/users/{user_id}", json={"role": "viewer"}, headers={"X-CSRF-Token": csrf}
            )
            assert answer.status_code == 200, await answer.get_data()
            await asyncio.wait_for(socket.closing.wait(), 5)
            took = time.monotonic() - lowered
        assert socket.close_code == live.CLOSE_AUTH and "role of ops changed" in socket.close_reason
        assert took < 5  # well under the 600 s re-check: it came over the bus
