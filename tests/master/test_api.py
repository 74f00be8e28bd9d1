"""Systems, modules, nodes, audit, OpenAPI: behaviour and bad input."""

from __future__ import annotations

import httpx
import pytest
from quart import Quart

from gdos_master.api import api
from gdos_master.app import Master
from gdos_master.openapi import openapi_path
from gdos_sdk import ConflictError, NotFoundError, ValidationError
from gdos_sdk.client import AsyncClient

pytestmark = pytest.mark.anyio


def counts(master: Master) -> dict[str, int]:
    return {
        t: master.db.scalar(f"SELECT COUNT(*) FROM {t}")
        for t in ("systems", "modules", "instances", "nodes", "packages", "users")
    }


async def test_openapi_document_matches_the_routes(admin: AsyncClient, app: Quart) -> None:
    document = await admin.openapi()
    documented = {
        (path, method.upper()) for path, ops in document["paths"].items() for method in ops
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or getattr(rule, "websocket", False):
            continue
        for method in rule.methods or ():
            if method in {"HEAD", "OPTIONS"}:
                continue
            served.add((openapi_path(rule.rule), method))
    assert documented == served
    for path, ops in document["paths"].items():
        for op in ops.values():
            assert op["summary"] and op["responses"], path
    refs = {s for s in str(document).split("'") if s.startswith("#/components/schemas/")}
    for ref in refs:
        assert ref.rsplit("/", 1)[1] in document["components"]["schemas"]


async def test_system_and_module_crud(admin: AsyncClient, make_zip) -> None:
    await admin.upload_package(make_zip(version="1.0.0"))
    await admin.upload_package(make_zip(version="1.1.0"))
    system = await admin.create_system("billing", "money")
    module = await admin.create_module(
        system.id, "api", "demo", "1.0.0", env={"PORT": "8000"}, args=["--fast"]
    )
    assert module.env == {"PORT": "8000"} and module.args == ["--fast"]
    moved = await admin.get_rollout((await admin.rollout(module.id, "1.1.0")).id, wait=10)
    assert moved.state.value == "done" and moved.items == []  # no instances to move
    assert (await admin.get_module(module.id)).version == "1.1.0"
    assert [m.name for m in await admin.list_modules(system.id)] == ["api"]
    assert (await admin.get_system(system.id)).module_count == 1
    renamed = await admin.update_system(system.id, name="billing2")
    assert renamed.name == "billing2"
    await admin.delete_module(module.id)
    await admin.delete_system(system.id)
    with pytest.raises(NotFoundError):
        await admin.get_system(system.id)


async def test_bad_input_names_the_problem_and_writes_nothing(
    admin: AsyncClient, app: Quart, master: Master, make_zip
) -> None:
    await admin.upload_package(make_zip())
    system = await admin.create_system("s1")
    before = counts(master)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    token = (await admin.create_token("t")).secret
    headers = {"Authorization": f"Bearer {token}"}
    before = counts(master)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://m/api/v1", headers=headers
    ) as http:
        cases = [
            ("POST", "/systems", b"{nope", 400, "JSON"),
            ("POST", "/systems", b"[1,2]", 422, "object"),
            ("POST", "/systems", b'{"nme": "x"}', 422, "name"),
            ("POST", "/systems", b'{"name": 5}', 422, "$.name"),
            (
                "POST",
                f"/systems/{system.id}/modules",
                b'{"name": "m", "package": "demo", "version": "9.9.9"}',
                422,
                "9.9.9",
            ),
            (
                "POST",
                f"/systems/{system.id}/modules",
                b'{"name": "m", "package": "demo", "version": "1.0.0", "env": {"A": 1}}',
                422,
                "$.env.A",
            ),
            (
                "POST",
                "/systems/nope/modules",
                b'{"name": "m", "package": "demo", "version": "1.0.0"}',
                404,
                "nope",
            ),
            ("POST", "/instances", b'{"module_id": "x", "node_id": "y"}', 404, "x"),
            ("GET", "/nodes/unknown-node", b"", 404, "unknown-node"),
            ("POST", "/instances/unknown/start", b"", 404, "unknown"),
            ("GET", "/audit?limit=abc", b"", 422, "limit"),
            # a JSON body is read into memory, so it has a bound far below the upload limit
            ("POST", "/systems", b'{"name": "' + b"x" * (9 * 2**20) + b'"}', 413, "limit"),
        ]
        for method, path, body, status, needle in cases:
            response = await http.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == status, (path, body, response.text)
            error = response.json()["error"]
            assert error["code"] and error["message"]
            assert needle.lower() in (error["message"] + str(error.get("details"))).lower(), (
                path,
                error,
            )
    assert counts(master) == before


async def test_chunked_json_body_over_the_limit_is_refused(
    admin: AsyncClient, app: Quart, master: Master
) -> None:
    """Without a Content-Length the bound is enforced while reading."""
    token = (await admin.create_token("t")).secret
    before = counts(master)

    async def body():  # type: ignore[no-untyped-def]
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 2**20
        yield b'"}'

    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://m/api/v1",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as http:
        response = await http.post("/systems", content=body())
    assert response.status_code == 413, response.text
    assert "limit" in response.json()["error"]["message"]
    assert counts(master) == before


async def test_conflicts(admin: AsyncClient, make_zip) -> None:
    await admin.create_system("dup")
    with pytest.raises(ConflictError):
        await admin.create_system("dup")
    with pytest.raises(ValidationError):
        await admin.create_system("bad/name")


async def test_planned_node_rename_delete(admin: AsyncClient) -> None:
    node = await admin.plan_node("db-7", alias="database", addresses=["10.0.0.7"])
    assert node.status.value == "planned"
    renamed = await admin.update_node(node.id, alias="primary db", labels={"role": "db"})
    assert renamed.alias == "primary db" and renamed.labels == {"role": "db"}
    assert [n.id for n in await admin.list_nodes(status="planned")] == [node.id]
    assert await admin.list_nodes(search="nomatch") == []
    await admin.delete_node(node.id)
    assert await admin.list_nodes() == []


async def test_every_mutating_call_is_audited_with_secrets_redacted(
    admin: AsyncClient, master: Master
) -> None:
    await admin.create_user("bob", "very-secret-pw", "viewer")
    system = await admin.create_system("audited")
    await admin.update_system(system.id, description="d")
    await admin.delete_system(system.id)
    page = await admin.list_audit(limit=10)
    actions = [e.action for e in page.items]
    assert actions[:4] == ["system.delete", "system.update", "system.create", "user.create"]
    assert all(e.actor == "admin" for e in page.items[:4])
    user_entry = page.items[3]
    assert user_entry.params["body"]["password"] == "***"
    assert "very-secret-pw" not in str(page)
    filtered = await admin.list_audit(action="system.", limit=2)
    assert filtered.total == 3 and len(filtered.items) == 2
    assert all(e.action.startswith("system.") for e in filtered.items)


async def test_settings_never_show_the_join_token(admin: AsyncClient) -> None:
    settings = await admin.get_settings()
    assert settings.join_token_source == "configuration"
    assert "join-token-for-tests" not in str(settings)
    with pytest.raises(ConflictError):  # set in configuration: rotation refused
        await admin.rotate_join_token()


def test_every_endpoint_is_documented_and_audited() -> None:
    for endpoint in api.endpoints:
        assert endpoint.summary
        if endpoint.method != "GET" and not endpoint.agent:
            assert endpoint.audit, endpoint.path
