"""A real master and worker with something of everything in them, for the API fuzzer.

:func:`seed` fills a started :class:`LocalCluster` through the public API (the SDK
client, raw HTTP where the SDK has no method, a WebSocket for the terminal) and
returns the ids the fuzzer puts into path and query parameters, so that its
requests reach real objects instead of answering 404 for everything.

Objects a fuzzed request may destroy or disable come in a disposable copy
(``*_doomed``): every DELETE gets those, so the objects the other operations
use stay alive for the whole run.
"""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import attrs
import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gdos_pack.cli import main as gdos_pack
from gdos_sdk import Client
from gdos_sdk.testing import LocalCluster, wait_until

from ..conftest import write_service

__all__ = ["World", "seed"]

PASSWORD = "fuzz-password-1"
SERVICE = 'import time\nprint("up", flush=True)\nwhile True:\n    time.sleep(1)\n'


@attrs.frozen
class World:
    """Credentials and the ids of the seeded objects."""

    url: str
    tokens: dict[str, str]  # role -> API token
    ids: dict[str, str]  # what -> id (see seed())


def build_package(folder: Path, name: str, version: str) -> Path:
    """A package zip built by the real gdos-pack from a tiny long-running service."""
    src = write_service(
        folder / f"{name}-{version}",
        {"name": name, "version": version, "entrypoint": "main.py"},
        {"main.py": "#!/usr/bin/env python3\n" + SERVICE},
        exec_files=("main.py",),
    )
    out = folder / f"{name}-{version}.zip"
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        code = gdos_pack(["build", str(src), "-o", str(out)])
    assert code == 0, f"gdos-pack build failed for {name}-{version}"
    return out


def _terminal_session(cluster: LocalCluster, node_id: str, token: str) -> str:
    """Open a web terminal, let its shell exit, and return the session id."""
    url = f"ws://127.0.0.1:{cluster.master_port}/api/v1/terminal/{node_id}?rows=24&cols=80"
    headers = {"Authorization": f"Bearer {token}"}
    with connect(url, additional_headers=headers, open_timeout=30) as ws:
        session_id = ""
        deadline = time.monotonic() + 30
        while not session_id and time.monotonic() < deadline:
            frame = ws.recv(timeout=10)
            if isinstance(frame, str):
                message = json.loads(frame)
                if message.get("op") == "session":
                    session_id = str(message["id"])
        assert session_id, "the terminal never said which session it is"
        ws.send(b"exit\r")
        try:
            while True:
                ws.recv(timeout=10)
        except ConnectionClosed:  # the shell exited and the master closed the socket
            pass
    return session_id


def seed(cluster: LocalCluster, work: Path) -> World:
    """Fill the cluster: nodes, packages, systems, modules, instances, users, tokens, ..."""
    ids: dict[str, str] = {}
    admin_token = cluster.admin_token()
    with (
        cluster.client() as gdos,
        httpx.Client(
            base_url=cluster.url + "/api/v1",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=60,
        ) as http,
    ):
        node = gdos.list_nodes(status="online")[0]
        ids["node"] = node.id
        ids["node_planned"] = gdos.plan_node("fuzz-planned", alias="planned").id
        ids["node_doomed"] = gdos.plan_node("fuzz-doomed").id

        pkgs = work / "pkgs"
        pkgs.mkdir(parents=True, exist_ok=True)
        package = gdos.upload_package(build_package(pkgs, "fuzzsvc", "1.0.0"))
        gdos.upload_package(build_package(pkgs, "fuzzsvc", "1.0.1"))
        doomed_pkg = gdos.upload_package(build_package(pkgs, "fuzzdoomed", "1.0.0"))
        ids.update(
            package=package.name,
            version=package.version,
            sha256=package.sha256,
            package_doomed=doomed_pkg.name,
            version_doomed=doomed_pkg.version,
        )

        system = gdos.create_system("shop", "the fuzzed system")
        ids["system"] = system.id
        ids["system_doomed"] = gdos.create_system("doomed").id
        module = gdos.create_module(system.id, "web", package.name, package.version)
        ids["module"] = module.id
        ids["module_doomed"] = gdos.create_module(
            system.id, "doomed", package.name, package.version
        ).id
        instance = gdos.deploy(module.id, node.id, wait="started")
        ids["instance"] = instance.id
        ids["instance_planned"] = gdos.deploy(module.id, ids["node_planned"], wait="started").id
        ids["instance_doomed"] = gdos.deploy(
            module.id, ids["node_planned"], start=False, wait="started"
        ).id
        ids["log_file"] = gdos.list_log_files(instance.id)[0].name

        job = gdos.start_batch(system.id, "start")
        ids["batch"] = gdos.get_batch(job.id, wait=60).id
        rollout = gdos.rollout(ids["module_doomed"], "1.0.1", wait="running")
        ids["rollout"] = gdos.get_rollout(rollout.id, wait=60).id
        run = gdos.start_command([node.id], "echo seeded")
        ids["command"] = gdos.get_command(run.id, wait=30).id

        gdos.create_user("fuzz-viewer", PASSWORD, "viewer")
        ids["user"] = gdos.create_user("fuzz-other", PASSWORD, "viewer").id
        ids["user_doomed"] = gdos.create_user("fuzz-doomed", PASSWORD, "viewer").id
        tokens = {"admin": admin_token}
        with Client(cluster.url) as viewer:
            viewer.login("fuzz-viewer", PASSWORD)
            tokens["viewer"] = viewer.create_token("fuzz").secret
            ids["token_doomed_viewer"] = viewer.create_token("doomed").token.id
        ids["token_doomed"] = gdos.create_token("doomed").token.id

        def post(path: str, body: object) -> str:
            response = http.post(path, json=body)
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        # A private address (the destination policy refuses loopback) that nothing can reach:
        # the session runs in a loopback-only network namespace and the master's HTTP proxy
        # is a dead loopback port, so no receiver URL, seeded or fuzzed, goes anywhere.
        dead = "http://10.255.255.1/hook"
        ids["receiver"] = post("/alerts/receivers", {"name": "ops", "url": dead})
        ids["receiver_test"] = post("/alerts/receivers", {"name": "tested", "url": dead})
        ids["receiver_doomed"] = post("/alerts/receivers", {"name": "doomed", "url": dead})
        rule = {"name": "hot", "metric": "cpu", "op": ">", "threshold": 99.0}
        ids["rule"] = post("/alerts/rules", rule)
        ids["rule_doomed"] = post("/alerts/rules", {**rule, "name": "doomed"})
        silence = {
            "matchers": [{"label": "rule", "value": "hot"}],
            "ends_at": "2100-01-01T00:00:00Z",
        }
        ids["silence"] = post("/alerts/silences", silence)

        ids["terminal"] = _terminal_session(cluster, node.id, admin_token)
        ids["terminal_doomed"] = _terminal_session(cluster, node.id, admin_token)
        wait_until(
            lambda: all(
                gdos.get_terminal_session(ids[k]).state == "closed"
                for k in ("terminal", "terminal_doomed")
            ),
            timeout=20,
            what="the seeded terminal sessions to close",
        )

        # Last, so that a fuzzed restore brings back everything above, tokens included.
        ids["backup_doomed"] = gdos.create_backup().name
        ids["backup"] = gdos.create_backup().name
    return World(url=cluster.url, tokens=tokens, ids=ids)
