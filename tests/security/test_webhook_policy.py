"""Finding #13: webhook receivers cannot reach loopback, link-local or metadata addresses.

The evidence of the review: receivers pointing at 127.0.0.1, 169.254.169.254 and
[::1] were accepted, and the test call told open ports from closed ones. Now such
destinations are refused when a receiver is saved (422 naming ``$.url``) and at
every delivery after DNS (a name that turns into 127.0.0.1 later is refused then,
and the request goes to the address that was checked); ``alerts.webhook_allow``
lets an admin allow some; and every failure to get an HTTP answer reads the same.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest

from gdos_master.alerting import UNREACHABLE
from gdos_master.app import Master
from gdos_master.destinations import DestinationPolicy
from gdos_sdk.alerts import ReceiverCreate, ReceiverPatch
from gdos_sdk.client import AsyncClient
from gdos_sdk.client._base import Call, _json
from gdos_sdk.codec import unstructure
from gdos_sdk.config import MasterAlerts, MasterSettings
from gdos_sdk.errors import ConfigError, ValidationError
from gdos_sdk.testing import free_port

from ..helpers.webhook import WebhookReceiver

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: MasterSettings, request: pytest.FixtureRequest) -> MasterSettings:
    allow = getattr(request, "param", "")
    return attrs.evolve(settings, alerts=MasterAlerts(webhook_allow=allow, webhook_timeout=2.0))


async def send(admin: AsyncClient, method: str, path: str, body: Any = None) -> Any:
    return await admin.send(Call(method, path, _json, json=body))


async def create(admin: AsyncClient, url: str, name: str = "hook") -> Any:
    return await send(
        admin, "POST", "/alerts/receivers", unstructure(ReceiverCreate(name=name, url=url))
    )


DENIED = [
    "http://127.0.0.1:9/hook",
    "http://127.1.2.3/",
    "http://[::1]:8080/",
    "http://localhost:8080/",
    "http://api.localhost/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0:80/",
    f"http://{socket.gethostname()}:9/",  # a real name that resolves to loopback here
]


async def test_denied_destinations_are_refused_when_saved(
    admin: AsyncClient, master: Master
) -> None:
    resolved = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), 9)}
    loopback_name = any(a.startswith("127.") or a == "::1" for a in resolved)
    for url in DENIED:
        if url.startswith(f"http://{socket.gethostname()}:") and not loopback_name:
            continue  # this host's name does not resolve to loopback here
        with pytest.raises(ValidationError) as info:
            await create(admin, url)
        assert info.value.details[0]["path"] == "$.url", url
        assert "not allowed" in info.value.message, url
    assert master.alert_store.receivers() == []


async def test_an_update_to_a_denied_destination_is_refused(admin: AsyncClient) -> None:
    created = await create(admin, "https://93.184.216.34:8443/x")
    with pytest.raises(ValidationError) as info:
        body = unstructure(ReceiverPatch(url="http://169.254.169.254/"))
        await send(admin, "PATCH", f"/alerts/receivers/{created['id']}", body)
    assert info.value.details[0]["path"] == "$.url"


@pytest.mark.parametrize("settings", ["127.0.0.1/32, hooks.internal"], indirect=True)
async def test_the_allow_list_lets_an_admin_reach_a_local_receiver(
    admin: AsyncClient, hook: WebhookReceiver
) -> None:
    created = await create(admin, f"http://127.0.0.1:{hook.port}/alert")
    result = await send(admin, "POST", f"/alerts/receivers/{created['id']}/test")
    assert result["ok"] is True and hook.hosts() == [f"127.0.0.1:{hook.port}"]
    # Not on the list: still refused.
    with pytest.raises(ValidationError):
        await create(admin, "http://169.254.169.254/", name="meta")


async def test_a_name_that_turns_into_loopback_is_refused_at_send_time(
    admin: AsyncClient, master: Master, hook: WebhookReceiver
) -> None:
    """DNS rebinding: public when saved, 127.0.0.1 when the alert goes out."""
    answers = {"hooks.test": ["93.184.216.34"]}

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    notifier = master.alerts.notifier
    notifier.policy = attrs.evolve(notifier.policy, resolver=resolver)
    created = await create(admin, f"http://hooks.test:{hook.port}/alert")
    answers["hooks.test"] = ["127.0.0.1"]
    result = await send(admin, "POST", f"/alerts/receivers/{created['id']}/test")
    assert result["ok"] is False and "not allowed" in result["error"]
    assert "127.0.0.1 is a loopback address" in result["error"]
    assert hook.hosts() == []  # nothing was sent
    # A name with several addresses is refused when any of them is denied.
    answers["hooks.test"] = ["93.184.216.34", "169.254.169.254"]
    result = await send(admin, "POST", f"/alerts/receivers/{created['id']}/test")
    assert "cloud metadata" in result["error"] and hook.hosts() == []


@pytest.mark.parametrize("settings", ["hooks.test"], indirect=True)
async def test_delivery_goes_to_the_checked_address_not_a_fresh_lookup(
    admin: AsyncClient, master: Master, hook: WebhookReceiver
) -> None:
    """hooks.test exists only in the policy's resolver: httpx never resolves it itself."""

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    notifier = master.alerts.notifier
    notifier.policy = attrs.evolve(notifier.policy, resolver=resolver)
    created = await create(admin, f"http://hooks.test:{hook.port}/alert")
    result = await send(admin, "POST", f"/alerts/receivers/{created['id']}/test")
    assert result["ok"] is True, result
    assert hook.hosts() == [f"hooks.test:{hook.port}"]  # the Host header keeps the name


def silent_server() -> tuple[socket.socket, int]:
    """A TCP port that accepts and never says a word (not HTTP)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, server.getsockname()[1]


@pytest.mark.parametrize("settings", ["127.0.0.0/8"], indirect=True)
async def test_the_test_call_does_not_tell_open_ports_from_closed_ones(
    admin: AsyncClient,
) -> None:
    closed = free_port()
    garbage = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    garbage.bind(("127.0.0.1", 0))
    garbage.listen(8)
    stop = threading.Event()

    def answer_garbage() -> None:
        garbage.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = garbage.accept()
            except OSError:
                continue
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            conn.close()

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    quiet, quiet_port = silent_server()
    try:
        errors = []
        for i, port in enumerate((closed, garbage.getsockname()[1], quiet_port)):
            created = await create(admin, f"http://127.0.0.1:{port}/x", name=f"r{i}")
            result = await send(admin, "POST", f"/alerts/receivers/{created['id']}/test")
            assert result["ok"] is False and result["status"] is None
            errors.append(result["error"])
        assert errors == [UNREACHABLE] * 3
    finally:
        stop.set()
        thread.join(2)
        garbage.close()
        quiet.close()


def test_the_allow_setting_is_checked_when_the_master_starts(tmp_path: Path) -> None:
    assert DestinationPolicy.parse("10.0.0.0/8, ::1, Hooks.Internal.").hosts == {"hooks.internal"}
    with pytest.raises(ConfigError, match="neither a network nor a host name"):
        DestinationPolicy.parse("http://x/")


@pytest.mark.parametrize("settings", ["not a host/"], indirect=True)
def test_a_bad_allow_setting_stops_create_app(settings: MasterSettings) -> None:
    from gdos_master.app import create_app

    with pytest.raises(ConfigError):
        create_app(settings)
