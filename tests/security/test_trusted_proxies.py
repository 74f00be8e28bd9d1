"""Behind a reverse proxy: X-Forwarded-For is believed from listed proxies only.

Without ``server.trusted_proxies`` every client behind a load balancer shared the
balancer's address in the login limits and the audit trail (and the header, which anyone
can send, must not be believed from anybody else).
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import httpx
import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_sdk.config import (
    MasterSettings,
    load_master_settings,
)
from gdos_sdk.errors import ConfigError
from gdos_sdk.forwarded import TrustedProxies, parse_networks

from ..master.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.anyio

PROXY = "10.1.2.3"


@pytest.fixture
def settings(settings: MasterSettings) -> MasterSettings:
    auth = attrs.evolve(settings.auth, login_attempts=50, login_attempts_per_ip=3)
    server = attrs.evolve(settings.server, trusted_proxies="10.0.0.0/8")
    return attrs.evolve(settings, auth=auth, server=server)


async def _login(
    app: Quart, peer: str, forwarded: str | None, username: str, password: str
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))  # type: ignore[arg-type]
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://m/api/v1") as http:
        return await http.post(
            "/auth/login", json={"username": username, "password": password}, headers=headers
        )


async def test_clients_behind_a_trusted_proxy_are_limited_one_by_one(app: Quart) -> None:
    for i in range(3):
        assert (await _login(app, PROXY, "192.0.2.10", f"n{i}", "guess-123")).status_code == 401
    assert (await _login(app, PROXY, "192.0.2.10", "admin", ADMIN_PASSWORD)).status_code == 429
    # Another client behind the same proxy is not held back by the first one's guessing.
    ok = await _login(app, PROXY, "192.0.2.11", "admin", ADMIN_PASSWORD)
    assert ok.status_code == 200, ok.text


async def test_a_client_cannot_escape_its_limit_by_sending_the_header(app: Quart) -> None:
    for i in range(3):  # not a trusted proxy: a new X-Forwarded-For each time changes nothing
        response = await _login(app, "192.0.2.66", f"198.51.100.{i}", f"n{i}", "guess-123")
        assert response.status_code == 401
    refused = await _login(app, "192.0.2.66", "198.51.100.99", "admin", ADMIN_PASSWORD)
    assert refused.status_code == 429
    # Through the proxy, a client's own prefix to the header is not believed either.
    for i in range(3):
        spoofed = f"198.51.100.{i}, 192.0.2.20"
        assert (await _login(app, PROXY, spoofed, f"m{i}", "guess-123")).status_code == 401
    refused = await _login(app, PROXY, "203.0.113.1, 192.0.2.20", "admin", ADMIN_PASSWORD)
    assert refused.status_code == 429


async def test_the_audit_trail_names_the_client_not_the_proxy(app: Quart, master: Master) -> None:
    response = await _login(app, PROXY, "192.0.2.44", "admin", ADMIN_PASSWORD)
    assert response.status_code == 200, response.text
    rows = master.db.all("SELECT action, ip FROM audit WHERE action = 'auth.login'")
    assert [row["ip"] for row in rows] == ["192.0.2.44"]


def test_the_chain_is_read_from_the_right_as_far_as_trusted_hops_go() -> None:
    proxies = TrustedProxies(parse_networks("10.0.0.0/8, 2001:db8::/32"))
    assert proxies.client("192.0.2.1", ["203.0.113.9"]) == "192.0.2.1"  # untrusted peer
    assert proxies.client("10.0.0.1", []) == "10.0.0.1"
    assert proxies.client("10.0.0.1", ["203.0.113.9"]) == "203.0.113.9"
    assert proxies.client("10.0.0.1", ["1.1.1.1, 203.0.113.9, 10.0.0.7"]) == "203.0.113.9"
    assert proxies.client("10.0.0.1", ["1.1.1.1", "203.0.113.9"]) == "203.0.113.9"
    assert proxies.client("10.0.0.1", ["[2001:db8::5]:443"]) == "2001:db8::5"
    assert proxies.client("10.0.0.1", ["203.0.113.9:5000"]) == "203.0.113.9"
    assert proxies.client("10.0.0.1", ["1.1.1.1, not-an-address, 10.0.0.8"]) == "10.0.0.8"
    assert proxies.client("::ffff:10.0.0.1", ["203.0.113.9"]) == "203.0.113.9"
    assert TrustedProxies().client("10.0.0.1", ["203.0.113.9"]) == "10.0.0.1"


def test_a_bad_entry_is_refused_at_start_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("'10.0.0.300'")):
        load_master_settings(["-trusted_proxies", "10.0.0.1,10.0.0.300"], env={}, cwd=tmp_path)
    settings = load_master_settings(
        [], env={"OPS_MASTER_SERVER_TRUSTED_PROXIES": "10.0.0.0/8"}, cwd=tmp_path
    )
    assert settings.server.trusted_proxies == "10.0.0.0/8"
