"""Finding 10: failed logins are limited per client address AND per account, with Retry-After;
unknown names cost what known ones do; the limiter's memory is bounded.

Before the fix the limit was per (address, name) pair: a second address, or a second name,
started afresh; the 429 had no Retry-After; an unknown name cost a hash on the event loop
plus a check, a known one only the check; and keys were never purged.
"""

from __future__ import annotations

import attrs
import httpx
import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_sdk.config import MasterSettings
from gdos_sdk.errors import AuthError, RateLimitedError

from ..master.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: MasterSettings) -> MasterSettings:
    """Small limits, so that each test needs few (hashed) logins to reach them."""
    auth = attrs.evolve(settings.auth, login_attempts=4, login_attempts_per_ip=6)
    return attrs.evolve(settings, auth=auth)


def _http(app: Quart, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://m/api/v1")


async def _login(app: Quart, ip: str, username: str, password: str) -> httpx.Response:
    async with _http(app, ip) as http:
        return await http.post("/auth/login", json={"username": username, "password": password})


async def test_one_address_is_limited_whatever_names_it_tries(app: Quart, master: Master) -> None:
    per_ip = master.settings.auth.login_attempts_per_ip
    for i in range(per_ip):
        assert (await _login(app, "192.0.2.10", f"name-{i}", "guess-123")).status_code == 401
    refused = await _login(app, "192.0.2.10", "yet-another-name", "guess-123")
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.json()["error"]["details"]["retry_after"] == int(refused.headers["Retry-After"])
    # Another address is not held back by this one.
    assert (await _login(app, "192.0.2.11", "admin", ADMIN_PASSWORD)).status_code == 200


async def test_one_account_is_limited_from_every_address(app: Quart, master: Master) -> None:
    per_account = master.settings.auth.login_attempts
    for i in range(per_account):
        assert (await _login(app, f"198.51.100.{i + 1}", "admin", "guess-123")).status_code == 401
    # A fresh address, even with the right password: the account waits.
    refused = await _login(app, "198.51.100.200", "admin", ADMIN_PASSWORD)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) > 0


async def test_the_owner_is_not_locked_out_by_someone_elses_guessing(app: Quart) -> None:
    assert (await _login(app, "203.0.113.5", "admin", ADMIN_PASSWORD)).status_code == 200
    for i in range(8):
        await _login(app, f"198.51.100.{i + 1}", "admin", "guess-123")
    assert (await _login(app, "198.51.100.99", "admin", ADMIN_PASSWORD)).status_code == 429
    # The address the owner logged in from before still gets in.
    assert (await _login(app, "203.0.113.5", "admin", ADMIN_PASSWORD)).status_code == 200


async def test_ipv6_clients_are_limited_by_their_64(app: Quart, master: Master) -> None:
    per_ip = master.settings.auth.login_attempts_per_ip
    for i in range(per_ip):
        response = await _login(app, f"2001:db8:1:2::{i + 1:x}", f"n{i}", "guess-123")
        assert response.status_code == 401
    assert (await _login(app, "2001:db8:1:2:ffff::1", "x", "guess-123")).status_code == 429


def test_addresses_are_keyed_as_hosts_are_given_them() -> None:
    from gdos_master.auth import client_key

    assert client_key("2001:db8:1:2:abcd::9") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") == "192.0.2.1"


async def test_unknown_and_known_names_take_the_same_path(app: Quart, master: Master) -> None:
    hasher = master.accounts.hasher
    cost = master.settings.auth.password_cost
    assert hasher.dummy.startswith(f"scrypt${2**cost}$8$1$")  # the cost real hashes have
    dummy = hasher.dummy
    before = hasher.computed
    assert (await _login(app, "192.0.2.50", "admin", "wrong-password")).status_code == 401
    assert hasher.computed == before + 1  # one check at full cost
    assert (await _login(app, "192.0.2.51", "no-such-user", "wrong-password")).status_code == 401
    assert hasher.computed == before + 2  # and one for an unknown name, no more
    assert hasher.dummy == dummy  # made once, not per request


def test_the_limiter_stays_small_under_a_spray_of_names_and_addresses() -> None:
    from gdos_master.auth import LoginLimiter

    now = [1000.0]
    limiter = LoginLimiter(per_account=5, per_ip=5, window=60, max_keys=100, clock=lambda: now[0])
    for i in range(1000):
        with pytest.raises(AuthError), limiter.attempt(f"10.{i // 250}.{i % 250}.1", f"u{i}"):
            raise AuthError("wrong username or password")
    assert limiter.keys <= 2 * 100
    now[0] += 61  # the window passes: every key goes
    limiter.check("10.0.0.1", "u0")
    assert limiter.keys == 0


def test_parallel_attempts_count_before_they_finish() -> None:
    from gdos_master.auth import LoginLimiter

    limiter = LoginLimiter(per_account=3, per_ip=100, window=60)
    with (
        limiter.attempt("10.0.0.1", "admin"),
        limiter.attempt("10.0.0.2", "admin"),
        limiter.attempt("10.0.0.3", "admin"),
        pytest.raises(RateLimitedError) as refused,
    ):
        limiter.check("10.0.0.4", "admin")
    assert refused.value.details == {"retry_after": 1}
    limiter.check("10.0.0.4", "admin")  # they ended without failing: nothing counts
