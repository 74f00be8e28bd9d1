"""Finding #2 on the master: an operator cannot reach root, or files outside a package.

The evidence of the review: with an operator token, an adopted module whose
spawn command was ``sh -c 'id > ...'`` wrote ``uid=0(root)``, and a package with
``log_paths: ["/etc/shadow"]`` let the log viewer return that file. The rule
(gdos_sdk.privileges, docs/security.md): every admin-only setting is refused
with 403 naming it, wherever an operator could introduce it — creating a
module, changing one, or replacing the bytes of a package version a module
runs. Admins may; operators still deploy and act on what an admin approved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from gdos_master.app import Master
from gdos_sdk import AdoptionSpec, AdoptionStrategy, PermissionDenied
from gdos_sdk.client import AsyncClient
from gdos_sdk.models import Role

from ..master.conftest import client_for, token_for

pytestmark = pytest.mark.anyio

CMD_CHECK = {"type": "cmd", "command": ["/bin/true"]}


@pytest.fixture
async def operator(admin: AsyncClient, app: Quart) -> AsyncIterator[AsyncClient]:
    async with client_for(app, await token_for(admin, app, "operator")) as client:
        yield client


def paths(exc: PermissionDenied) -> list[str]:
    return [d["path"] for d in exc.details]


ADOPTIONS = {
    "spawn command": (
        AdoptionSpec(strategy=AdoptionStrategy.SPAWN, command="sh -c 'id > /tmp/x'"),
        "$.adoption.command",
    ),
    "start command": (
        AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="x", start_command="id"),
        "$.adoption.start_command",
    ),
    "stop command": (
        AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="x", stop_command="id"),
        "$.adoption.stop_command",
    ),
    "restart command": (
        AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="x", restart_command="id"),
        "$.adoption.restart_command",
    ),
    "log paths": (
        AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="x", log_paths=["/etc/shadow"]),
        "$.adoption.log_paths[0]",
    ),
}


@pytest.mark.parametrize("case", list(ADOPTIONS))
async def test_adoption_commands_and_log_paths_are_admin_only(
    case: str, admin: AsyncClient, operator: AsyncClient, master: Master
) -> None:
    spec, path = ADOPTIONS[case]
    system = await admin.create_system("legacy")
    with pytest.raises(PermissionDenied) as info:
        await operator.create_adopted_module(system.id, "svc", spec)
    assert path in paths(info.value) and "admin role" in info.value.message
    assert await admin.list_modules(system.id) == []  # nothing was created
    created = await admin.create_adopted_module(system.id, "svc", spec)
    assert created.adoption == spec
    # An adoption without commands or files stays an operator's business.
    plain = AdoptionSpec(strategy=AdoptionStrategy.MATCH, name="redis-server")
    assert (await operator.create_adopted_module(system.id, "redis", plain)).adoption == plain
    refused = [e for e in (await admin.list_audit(action="module.create")).items if e.status == 403]
    assert len(refused) == 1 and refused[0].actor.startswith("user-operator")


PACKAGES: dict[str, tuple[dict[str, Any], str]] = {
    "cmd health check": ({"health_check": CMD_CHECK}, "$.manifest.health_check"),
    "absolute log path": ({"log_paths": ["/etc/shadow"]}, "$.manifest.log_paths[0]"),
    "escaping log path": ({"log_paths": ["logs/../../../etc/shadow"]}, "$.manifest.log_paths[0]"),
    "account": ({"user": "root"}, "$.manifest.user"),
    "group": ({"group": "shadow"}, "$.manifest.group"),
}


@pytest.mark.parametrize("case", list(PACKAGES))
async def test_an_operator_uploads_but_cannot_run_a_package_that_needs_an_admin(
    case: str, admin: AsyncClient, operator: AsyncClient, make_zip: Callable[..., bytes]
) -> None:
    extra, path = PACKAGES[case]
    package = await operator.upload_package(make_zip(name="evil", **extra))  # storing is fine
    system = await operator.create_system("s")
    with pytest.raises(PermissionDenied) as info:
        await operator.create_module(system.id, "m", package.name, package.version)
    assert paths(info.value) == [path]
    module = await admin.create_module(system.id, "m", package.name, package.version)
    assert module.version == package.version


async def test_module_settings_that_need_an_admin(
    admin: AsyncClient, operator: AsyncClient, make_zip: Callable[..., bytes]
) -> None:
    package = await operator.upload_package(make_zip(name="app", log_paths=["logs/app.log"]))
    system = await operator.create_system("s")
    for fields, path in (
        ({"health_check": CMD_CHECK}, "$.health_check"),
        ({"user": "root"}, "$.user"),
        ({"user": "postgres"}, "$.user"),
        ({"group": "docker"}, "$.group"),
    ):
        with pytest.raises(PermissionDenied) as info:
            await operator.create_module(system.id, "m", "app", "1.0.0", **fields)
        assert paths(info.value) == [path]
    # A relative log path inside the package and an http check are an operator's to choose.
    module = await operator.create_module(
        system.id, "m", package.name, package.version, health_check={"type": "tcp", "port": 80}
    )
    assert module.health_check == {"type": "tcp", "port": 80}
    with pytest.raises(PermissionDenied, match=r"\$\.user"):
        await operator.update_module(module.id, user="root")
    with pytest.raises(PermissionDenied, match=r"\$\.health_check"):
        await operator.update_module(module.id, health_check=CMD_CHECK)
    assert (await admin.get_module(module.id)).user == ""  # nothing changed


async def test_a_privileged_module_is_an_admins_to_change_but_an_operators_to_run(
    admin: AsyncClient, operator: AsyncClient, make_zip: Callable[..., bytes]
) -> None:
    await admin.upload_package(make_zip(name="web"))
    await admin.upload_package(make_zip(name="web", version="2.0.0"))
    system = await admin.create_system("s")
    root = await admin.create_module(system.id, "web", "web", "1.0.0", user="root")
    # Env (LD_PRELOAD, PATH), args or a new version would run the operator's choice as root.
    for change in (
        {"env": {"LD_PRELOAD": "/tmp/evil.so"}},
        {"args": ["-c", "id"]},
    ):
        with pytest.raises(PermissionDenied, match="changing this module needs the admin role"):
            await operator.update_module(root.id, **change)
    with pytest.raises(PermissionDenied, match=r"moving module 'web' to 2\.0\.0 needs the admin"):
        await operator.rollout(root.id, "2.0.0")
    # Its order is not a privilege: the systems page moves it.
    assert (await operator.update_module(root.id, start_order=3)).start_order == 3
    # Removing the account makes it an ordinary module again.
    plain = await operator.update_module(root.id, user="")
    assert plain.user == ""
    assert (await operator.update_module(root.id, env={"A": "1"})).env == {"A": "1"}
    # An operator deploys what an admin approved (here onto a planned node: 202, queued).
    again = await admin.update_module(root.id, user="root")
    node = await admin.plan_node("db-1")
    instance = await operator.deploy(again.id, node.id, wait="started")
    assert instance.module_id == root.id


async def test_an_operator_cannot_swap_the_bytes_under_a_privileged_module(
    admin: AsyncClient, operator: AsyncClient, make_zip: Callable[..., bytes], master: Master
) -> None:
    original = await admin.upload_package(make_zip(name="web"))
    system = await admin.create_system("s")
    await admin.create_module(system.id, "web", "web", "1.0.0", user="root")
    with pytest.raises(PermissionDenied, match=r"replacing web@1\.0\.0"):
        await operator.upload_package(make_zip(name="web", description="other"), force=True)
    assert (await admin.get_package("web", "1.0.0")).sha256 == original.sha256
    # Nor make a module that runs a version privileged by replacing it.
    await operator.upload_package(make_zip(name="api"))
    plain = await operator.create_module(system.id, "api", "api", "1.0.0")
    with pytest.raises(PermissionDenied, match=r"\$\.manifest\.log_paths\[0\]"):
        await operator.upload_package(make_zip(name="api", log_paths=["/etc/shadow"]), force=True)
    # An admin may; an operator may replace what stays unprivileged.
    await admin.upload_package(make_zip(name="web", description="other"), force=True)
    replaced = await operator.upload_package(make_zip(name="api", description="v2"), force=True)
    assert replaced.description == "v2" and plain.package == "api"


async def test_an_operator_cannot_move_a_module_to_a_privileged_version(
    admin: AsyncClient, operator: AsyncClient, make_zip: Callable[..., bytes]
) -> None:
    await operator.upload_package(make_zip(name="api"))
    await operator.upload_package(make_zip(name="api", version="2.0.0", health_check=CMD_CHECK))
    system = await operator.create_system("s")
    module = await operator.create_module(system.id, "api", "api", "1.0.0")
    with pytest.raises(PermissionDenied, match=r"\$\.manifest\.health_check"):
        await operator.rollout(module.id, "2.0.0")  # a version changes through a rollout
    assert (await admin.get_module(module.id)).version == "1.0.0"
    moved = await admin.get_rollout((await admin.rollout(module.id, "2.0.0")).id, wait=10)
    assert moved.state.value == "done" and (await admin.get_module(module.id)).version == "2.0.0"


async def test_admins_only_is_what_the_role_says(admin: AsyncClient, app: Quart) -> None:
    """A token made with a lower role than its user's acts with the lower role."""
    narrowed = (await admin.create_token("ops", role=Role.OPERATOR)).secret
    system = await admin.create_system("s")
    async with client_for(app, narrowed) as client:
        with pytest.raises(PermissionDenied):
            await client.create_adopted_module(
                system.id,
                "x",
                AdoptionSpec(strategy=AdoptionStrategy.SPAWN, command="id"),
            )


def test_the_role_matrix_in_the_docs_is_the_route_registry() -> None:
    """docs/security.md lists every route once, with the role the routing layer enforces."""
    import re

    from gdos_master.api import api

    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    generated = text.split("<!-- BEGIN GENERATED -->")[1].split("<!-- END GENERATED -->")[0]
    rows = re.findall(
        r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| ([^|]+) \|", generated, re.M
    )
    documented = {(m, p): role.strip() for m, p, role in rows}
    assert len(documented) == len(rows) == len(api.endpoints)
    for e in api.endpoints:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", api.prefix + e.path)
        role = "node credential" if e.agent else (e.role.value if e.role else "none")
        assert documented[(e.method, path)] == role, (e.method, path)
    for socket in ("/api/v1/agent/ws", "/api/v1/live", "/api/v1/terminal/{node_id}"):
        assert f"| `{socket}` |" in generated


def test_a_service_cannot_swap_its_checked_log_file_for_a_host_file(tmp_path: Path) -> None:
    """The package folder is the service's: it may replace a checked name by a link at once.

    The worker (root) checks the file it actually opened, so the swap reads nothing.
    """
    import os

    from gdos_sdk.logfiles import log_sources, read_follow, resolve_log_file, tail_lines

    app, logs = tmp_path / "app", tmp_path / "logs"
    (app / "logs").mkdir(parents=True)
    logs.mkdir()
    (app / "logs" / "app.log").write_text("mine\n")
    (app / "x").mkdir()
    (app / "x" / "passwd").write_text("mine too\n")
    sources = log_sources(app, logs, ["logs/app.log", "x/passwd"])
    path = resolve_log_file("logs/app.log", sources)
    assert tail_lines(path, 5, root=app)[0] == "mine\n"
    _, cursor = tail_lines(path, 5, root=app)
    # After the check: the file becomes a link to a host file...
    (app / "logs" / "app.log").unlink()
    (app / "logs" / "app.log").symlink_to("/etc/passwd")
    with pytest.raises(PermissionDenied, match="outside the instance's folder"):
        tail_lines(path, 5, root=app)
    with pytest.raises(PermissionDenied):
        read_follow(path, cursor, root=app)
    # ... or a folder on the way becomes a link to /etc.
    other = resolve_log_file("x/passwd", sources)
    (app / "x" / "passwd").unlink()
    (app / "x").rmdir()
    (app / "x").symlink_to("/etc")
    with pytest.raises(PermissionDenied):
        tail_lines(other, 5, root=app)
    # A FIFO in its place is refused at once instead of hanging the reader.
    (app / "logs" / "app.log").unlink()
    os.mkfifo(app / "logs" / "app.log")
    with pytest.raises(PermissionDenied, match="not a regular file"):
        tail_lines(path, 5, root=app)
