"""Finding #7: secrets are write-only — env secrets of modules and credentials in receiver URLs.

The evidence of the review: a viewer's ``GET /modules/<id>`` showed
``env: {"DB_PASSWORD": "..."}`` in clear, and ``GET /alerts/receivers`` showed
``https://alice:hunter2@.../XXXXSECRET``. Now no answer carries them, for any role
(admins included); the worker still gets them, editing keeps what it cannot see,
and the audit trail masks them the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs
import httpx
import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_sdk.alerts import ReceiverCreate, ReceiverPatch
from gdos_sdk.client import AsyncClient
from gdos_sdk.codec import structure, unstructure
from gdos_sdk.config import MasterAlerts, MasterSettings
from gdos_sdk.models import Module, ModuleCreate, ModulePatch

from ..helpers.webhook import WebhookReceiver
from ..master.conftest import token_for

pytestmark = pytest.mark.anyio

PASSWORD = "hunter2-very-secret"


@pytest.fixture
def settings(settings: MasterSettings) -> MasterSettings:
    # The test receiver is on loopback, which the destination policy refuses unless allowed.
    return attrs.evolve(settings, alerts=MasterAlerts(webhook_allow="127.0.0.1/32"))


async def raw(app: Quart, token: str, path: str) -> str:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://m/api/v1") as http:
        response = await http.get(path, headers=headers)
        assert response.status_code == 200, response.text
        return response.text


async def secret_module(admin: AsyncClient, make_zip: Callable[..., bytes]) -> Module:
    await admin.upload_package(make_zip())
    system = await admin.create_system("billing")
    return await admin.create_module(
        system.id,
        "api",
        "demo",
        "1.0.0",
        env={
            "PORT": "8080",
            "DB_PASSWORD": PASSWORD,
            "REGION": "eu-secret-region",
            "DATABASE_URL": f"postgres://app:{PASSWORD}@db/app",
        },
        secret_env=["REGION"],
    )


async def test_no_role_reads_module_env_secrets(
    admin: AsyncClient, app: Quart, master: Master, make_zip: Callable[..., bytes]
) -> None:
    module = await secret_module(admin, make_zip)
    assert module.env == {
        "PORT": "8080",
        "DB_PASSWORD": "***",
        "REGION": "***",
        "DATABASE_URL": "***",
    }
    assert sorted(module.masked_env) == ["DATABASE_URL", "DB_PASSWORD", "REGION"]
    for role in ("viewer", "operator"):
        token = await token_for(admin, app, role)
        for path in (f"/modules/{module.id}", f"/systems/{module.system_id}/modules"):
            text = await raw(app, token, path)
            assert PASSWORD not in text and "eu-secret-region" not in text
            assert '"DB_PASSWORD":"***"' in text and '"PORT":"8080"' in text
    admin_view = await admin.get_module(module.id)
    assert admin_view.env["DB_PASSWORD"] == "***"  # write-only for admins too
    # The worker gets the real values in the deploy command.
    node = await admin.plan_node("db-1")
    instance = await admin.deploy(module.id, node.id, wait="started")
    row = master.db.one("SELECT * FROM instances WHERE id = ?", (instance.id,))
    spec = master.orchestrator.spec_for(row)
    assert spec.env["DB_PASSWORD"] == PASSWORD and spec.env["REGION"] == "eu-secret-region"


async def test_editing_keeps_what_it_cannot_see(
    admin: AsyncClient, make_zip: Callable[..., bytes]
) -> None:
    module = await secret_module(admin, make_zip)
    # The SDK's read-modify-write round trip sends "***" back: the values are kept.
    changed = await admin.update_module(module.id, env={**module.env, "PORT": "9090"})
    assert changed.env["PORT"] == "9090" and changed.env["DB_PASSWORD"] == "***"
    # Leaving a secret out keeps it too; a visible variable left out is removed.
    changed = await admin.update_module(module.id, env={"LOG": "debug"})
    assert sorted(changed.env) == ["DATABASE_URL", "DB_PASSWORD", "LOG", "REGION"]
    # null removes one; a new value replaces it.
    changed = await admin.update_module(module.id, env={"REGION": None, "DB_PASSWORD": "new"})
    assert sorted(changed.env) == ["DATABASE_URL", "DB_PASSWORD"]


async def test_kept_and_changed_values_reach_the_worker(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    module = await secret_module(admin, make_zip)
    await admin.update_module(module.id, env={**module.env, "PORT": "1"})
    kept = master.systems.stored_module(module.id).env
    assert kept["DB_PASSWORD"] == PASSWORD and kept["REGION"] == "eu-secret-region"
    await admin.update_module(module.id, env={"DB_PASSWORD": "rotated"})
    assert master.systems.stored_module(module.id).env["DB_PASSWORD"] == "rotated"


async def test_the_audit_trail_masks_secrets_as_the_api_does(
    admin: AsyncClient, master: Master, make_zip: Callable[..., bytes]
) -> None:
    module = await secret_module(admin, make_zip)
    # REGION is secret by the module's own list: the patch body alone does not say so.
    await admin.update_module(module.id, env={"REGION": "eu-other-secret"})
    entries = (await admin.list_audit(action="module.", limit=10)).items
    text = json.dumps([unstructure(e) for e in entries])
    assert PASSWORD not in text and "eu-secret-region" not in text
    assert "eu-other-secret" not in text
    assert entries[0].params["body"]["env"] == {"REGION": "***"}


def test_models_round_trip_with_the_new_fields() -> None:
    module = Module(
        id="m",
        system_id="s",
        name="api",
        package="p",
        version="1",
        env={"A": "1", "TOKEN": "***"},
        user="svc",
        group="svc",
        secret_env=["A"],
        masked_env=["TOKEN"],
    )
    assert structure(unstructure(module), Module) == module
    patch = ModulePatch(env={"A": None, "B": "2"}, user="", secret_env=[])
    assert structure(unstructure(patch), ModulePatch) == patch
    create = ModuleCreate(name="x", package="p", version="1", secret_env=["A"], user="svc")
    assert structure(unstructure(create), ModuleCreate) == create


async def test_receiver_urls_are_write_only_and_still_delivered_to(
    admin: AsyncClient, app: Quart, master: Master, hook: WebhookReceiver
) -> None:
    url = f"http://alice:{PASSWORD}@127.0.0.1:{hook.port}/services/T0/B0/XXXXSECRET?token=abc123"
    created = await admin_send(
        admin, "POST", "/alerts/receivers", unstructure(ReceiverCreate(name="ops", url=url))
    )
    receiver_id = created["id"]
    assert created["url"] == f"http://***@127.0.0.1:{hook.port}/***"
    assert created["url_redacted"] is True
    for role in ("viewer", "operator"):
        text = await raw(app, await token_for(admin, app, role), "/alerts/receivers")
        assert PASSWORD not in text and "XXXXSECRET" not in text and "abc123" not in text
        assert "alice" not in text
    # Renaming (the form sends back the URL it was shown) keeps the stored URL.
    patch = unstructure(ReceiverPatch(name="ops-renamed", url=created["url"]))
    renamed = await admin_send(admin, "PATCH", f"/alerts/receivers/{receiver_id}", patch)
    assert renamed["name"] == "ops-renamed"
    assert master.alert_store.receiver_url(receiver_id) == url
    # Delivery uses the real URL: path, query and credentials arrive.
    result = await admin_send(admin, "POST", f"/alerts/receivers/{receiver_id}/test", None)
    assert result["ok"] is True, result
    assert hook.paths() == ["/services/T0/B0/XXXXSECRET?token=abc123"]
    # The audit entry of the create masks the URL as the API does.
    entries = (await admin.list_audit(action="receiver.", limit=10)).items
    assert PASSWORD not in json.dumps([unstructure(e) for e in entries])
    assert "XXXXSECRET" not in json.dumps([unstructure(e) for e in entries])


async def admin_send(admin: AsyncClient, method: str, path: str, body: object) -> dict[str, object]:
    from gdos_sdk.client._base import Call, _json

    result: dict[str, object] = await admin.send(Call(method, path, _json, json=body))
    return result
