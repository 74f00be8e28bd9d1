"""The ``gdos`` command line as an operator runs it: a subprocess against a real cluster.

One master and two workers serve the whole module (aliases ``w0`` and ``w1``; both run on
this host, so their hostnames are the same: the ambiguous case comes for free).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import yaml

from gdos_cli import main
from gdos_sdk import Client
from gdos_sdk.testing import LocalCluster, wait_until

from ..conftest import write_service
from .cli_helpers import gdos_argv, isolated_env, run_gdos
from .conftest import SERVICES, gdos_pack

pytestmark = pytest.mark.e2e


@attrs.frozen
class Fleet:
    cluster: LocalCluster
    env: dict[str, str]  # GDOS_URL + an admin GDOS_TOKEN, no profile
    nodes: dict[str, str]  # alias -> node id
    package: Path
    tmp: Path

    def gdos(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return run_gdos(*args, env=self.env, **kwargs)  # type: ignore[arg-type]

    def client(self) -> Client:
        return self.cluster.client()


def _build(tmp: Path, name: str, version: str, service: str = "sleeper") -> Path:
    folder = tmp / "src" / f"{name}-{version}"
    body = {"name": name, "version": version, "entrypoint": "main.py"}
    source = (SERVICES / f"{service}.py").read_text()
    write_service(folder, body, {"main.py": source}, exec_files=("main.py",))
    out = tmp / f"{name}-{version}.zip"
    result = gdos_pack("build", str(folder), "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("cli")
    cluster = LocalCluster(tmp / "cluster")
    try:
        cluster.start_master()
        nodes: dict[str, str] = {}
        for alias in ("w0", "w1"):
            worker = cluster.start_worker()
            node_id = cluster.wait_worker_connected(worker)
            with cluster.client() as gdos:
                gdos.update_node(node_id, alias=alias)
            nodes[alias] = node_id
        env = isolated_env(
            tmp / "config.toml", GDOS_URL=cluster.url, GDOS_TOKEN=cluster.admin_token()
        )
        package = _build(tmp, "hello", "1.0.0")
        with cluster.client() as gdos:
            gdos.upload_package(package)  # tests that do not push have it too
        yield Fleet(cluster, env, nodes, package, tmp)
    finally:
        cluster.close()


def _json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _keys(data: object) -> list[object]:
    """What identifies the items of a listing (or of a page of one)."""
    items = data["items"] if isinstance(data, dict) else data
    assert isinstance(items, list)
    return [i.get("id") or i.get("name") or i.get("rule_id") for i in items]


# --- login, profiles, logout ------------------------------------------------------------


def test_login_saves_a_private_token_for_this_machine_and_logout_revokes_it(
    fleet: Fleet,
) -> None:
    config = fleet.tmp / "login" / "config.toml"
    env = isolated_env(config)  # no GDOS_URL, no GDOS_TOKEN: only what login saves
    password = fleet.cluster.admin_password + "\n"
    login = run_gdos(
        "login", fleet.cluster.url, "-u", "admin", "--password-stdin", env=env, input=password
    )
    assert login.returncode == 0, login.stderr
    assert f"Logged in to {fleet.cluster.url} as admin (admin)" in login.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    first = config.read_text()
    assert 'current = "default"' in first and 'token = "gdos_' in first

    whoami = run_gdos("whoami", env=env)
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.stdout.strip() == f"admin (admin) on {fleet.cluster.url}"
    machine = f"gdos-cli@{socket.gethostname()}"
    with fleet.client() as gdos:
        mine = [t for t in gdos.list_tokens() if t.name == machine and not t.revoked]
        assert len(mine) == 1

    # Logging in again replaces the token: the old one is revoked, not left behind.
    again = run_gdos(
        "login", "-u", "admin", "--password-stdin", env=env, input=password
    )  # the URL comes from the profile
    assert again.returncode == 0, again.stderr
    with fleet.client() as gdos:
        live = [t for t in gdos.list_tokens() if t.name == machine and not t.revoked]
        assert len(live) == 1 and live[0].id != mine[0].id

    profiles = _json(run_gdos("profiles", "-o", "json", env=env))
    assert profiles == [
        {
            "name": "default",
            "url": fleet.cluster.url,
            "current": True,
            "token": True,
            "verify": True,
        }
    ]
    assert "gdos_" not in run_gdos("profiles", "-o", "yaml", env=env).stdout

    logout = run_gdos("logout", env=env)
    assert logout.returncode == 0, logout.stderr
    assert "profile 'default' removed" in logout.stderr
    with fleet.client() as gdos:
        assert not [t for t in gdos.list_tokens() if t.name == machine and not t.revoked]
    assert "gdos_" not in config.read_text()
    after = run_gdos("nodes", env=env)
    assert after.returncode == 3
    assert "gdos login" in after.stderr and after.stdout == ""


def test_environment_overrides_the_profile(fleet: Fleet) -> None:
    env = isolated_env(fleet.tmp / "env" / "config.toml")
    env["GDOS_URL"] = fleet.cluster.url
    env["GDOS_TOKEN"] = "gdos_not-a-real-token"
    bad = run_gdos("nodes", env=env)
    assert bad.returncode == 3 and "invalid or revoked API token" in bad.stderr
    env["GDOS_TOKEN"] = fleet.cluster.admin_token()
    assert run_gdos("nodes", env=env).returncode == 0
    # --url beats GDOS_URL: an unreachable master is exit code 6.
    dead = run_gdos("--url", "http://127.0.0.1:9", "nodes", env=env)
    assert dead.returncode == 6 and "cannot reach the master" in dead.stderr


# --- listings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["nodes"],
        ["systems"],
        ["modules"],
        ["packages"],
        ["ps"],
        ["alerts"],
        ["alerts", "history"],
        ["alerts", "rules"],
        ["audit", "--limit", "5"],
        ["backup", "list"],
        ["rollout", "list"],
        ["profiles"],
    ],
)
def test_every_listing_speaks_every_format(
    fleet: Fleet,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In this process (the formats are the point here; the other tests run the script).
    for name in [k for k in os.environ if k.startswith("GDOS_")]:
        monkeypatch.delenv(name)
    for name, value in fleet.env.items():
        if name.startswith("GDOS_") or name == "COLUMNS":
            monkeypatch.setenv(name, value)

    def gdos(*args: str) -> str:
        code = main([*command, *args])
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    as_json = json.loads(gdos("-o", "json"))
    as_yaml = yaml.safe_load(gdos("-o", "yaml"))
    assert _keys(as_yaml) == _keys(as_json)  # samples may change in between
    table, wide = gdos(), gdos("-o", "wide")
    header = table.splitlines()[0]
    assert header == header.upper() and len(wide.splitlines()[0]) >= len(header)
    rows = len(_keys(as_json))
    if rows:
        assert len(table.splitlines()) == 1 + rows


def test_nodes_table_json_and_fitting_the_terminal(fleet: Fleet) -> None:
    nodes = _json(fleet.gdos("nodes", "-o", "json"))
    assert isinstance(nodes, list)
    assert {n["id"] for n in nodes} == set(fleet.nodes.values())
    assert {n["alias"] for n in nodes} == {"w0", "w1"}
    table = fleet.gdos("nodes").stdout.splitlines()
    assert table[0].split()[:3] == ["HOSTNAME", "ALIAS", "STATUS"]
    assert len(table) == 3 and all("online" in line for line in table[1:])
    assert any(fleet.nodes["w0"][:8] in line for line in table)
    # Wide rows are longer than 140 columns here (the OS name, two addresses): the
    # shrinkable columns are cut to fit; ids and states never are.
    wide = fleet.gdos("nodes", "-o", "wide").stdout
    assert max(len(line) for line in wide.splitlines()) > 140
    narrow = run_gdos("nodes", "-o", "wide", env={**fleet.env, "COLUMNS": "140"})
    assert narrow.returncode == 0
    assert all(len(line) <= 140 for line in narrow.stdout.splitlines()), narrow.stdout
    assert "…" in narrow.stdout and fleet.nodes["w0"] in narrow.stdout


# --- packages, deploy, lifecycle, logs --------------------------------------------------


def test_push_deploy_by_names_lifecycle_and_logs(fleet: Fleet) -> None:
    pushed = _json(fleet.gdos("push", str(fleet.package), "-o", "json"))
    assert isinstance(pushed, dict) and (pushed["name"], pushed["version"]) == ("hello", "1.0.0")
    assert "hello" in fleet.gdos("packages").stdout
    with fleet.client() as gdos:
        shop = gdos.create_system("shop")
        gdos.create_module(shop.id, "web", "hello", "1.0.0")

    deployed = fleet.gdos("deploy", "shop/web", "w0", "-o", "json")
    (instance,) = _json(deployed)  # type: ignore[misc]
    assert instance["state"] == "running" and instance["node_id"] == fleet.nodes["w0"]
    short = instance["id"][:8]
    ps = fleet.gdos("ps", "--system", "shop", "--node", "w0")
    assert ps.returncode == 0
    row = next(line for line in ps.stdout.splitlines() if line.startswith(short))
    assert "shop/web" in row and "w0" in row and "running" in row and "hello 1.0.0" in row

    stopped = _json(fleet.gdos("stop", "shop/web@w0", "-o", "json"))
    assert [i["state"] for i in stopped] == ["stopped"]  # type: ignore[union-attr]
    assert _keys(_json(fleet.gdos("ps", "--state", "stopped", "-o", "json"))) == [instance["id"]]
    started = fleet.gdos("start", short)
    assert started.returncode == 0 and "running" in started.stdout
    restarted = _json(fleet.gdos("restart", instance["id"], "-o", "json"))
    assert restarted[0]["restarts"] >= 0  # type: ignore[index]

    wait_until(
        lambda: "up" in fleet.gdos("logs", short).stdout, timeout=20, what="the service's log"
    )
    with subprocess.Popen(
        [*gdos_argv(), "logs", "-f", "-n", "5", "shop/web@w0"],
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follow:
        try:
            assert follow.stdout is not None
            assert "up" in follow.stdout.readline()
            follow.send_signal(signal.SIGINT)  # Ctrl-C is how following ends
            assert follow.wait(timeout=20) == 0
        finally:
            if follow.poll() is None:
                follow.kill()

    without_tty = fleet.gdos("destroy", short)  # nobody to ask: --yes is required
    assert without_tty.returncode == 2 and "--yes" in without_tty.stderr
    destroyed = fleet.gdos("destroy", "--yes", short)
    assert destroyed.returncode == 0, destroyed.stderr
    assert f"destroyed shop/web@w0 ({short})" in destroyed.stderr
    assert fleet.gdos("ps", "--system", "shop", "-o", "json").stdout.strip() == "[]"


def test_names_that_are_ambiguous_or_unknown(fleet: Fleet) -> None:
    with fleet.client() as gdos:
        for system in ("blue", "green"):
            created = gdos.create_system(system)
            gdos.create_module(created.id, "api", "hello", "1.0.0")
    hostname = socket.gethostname()
    cases = [
        (["deploy", "api", "w0"], 2, "module 'api' is ambiguous: it matches blue/api, green/api"),
        (["deploy", "blue/api", hostname], 2, f"node {hostname!r} is ambiguous"),
        (["deploy", "blue/apx", "w0"], 4, "did you mean 'api'?"),
        (["deploy", "blue/api", "w00"], 4, "no node 'w00'; did you mean 'w0'?"),
        (["ps", "--system", "bleu"], 4, "no system 'bleu'; did you mean 'blue'?"),
        (["start", "ffffffff"], 4, "no instance 'ffffffff'"),
        (["logs", "green/api@w1"], 4, "no instance of green/api on"),
    ]
    for argv, code, message in cases:
        result = fleet.gdos(*argv)
        assert (result.returncode, result.stdout) == (code, ""), (argv, result)
        assert message in result.stderr, (argv, result.stderr)
        assert result.stderr.startswith("gdos: error: ")


def test_errors_have_their_exit_codes(fleet: Fleet) -> None:
    other = _build(fleet.tmp / "other", "hello", "1.0.0", service="healthy")
    conflict = fleet.gdos("push", str(other))
    assert conflict.returncode == 5, conflict
    assert conflict.stderr.startswith("gdos: error: ")
    usage = fleet.gdos("ps", "--state", "sleepy")
    assert usage.returncode == 2 and "'sleepy' is not one of" in usage.stderr
    guess = fleet.gdos("nodes", "--stauts", "online")
    assert guess.returncode == 2 and "Did you mean '--status'?" in guess.stderr
    with fleet.client() as gdos:
        gdos.create_user("watcher", "a-long-password-1", "viewer")
        with Client(fleet.cluster.url) as viewer:
            viewer.login("watcher", "a-long-password-1")
            token = viewer.create_token("t").secret
    denied = run_gdos("audit", env={**fleet.env, "GDOS_TOKEN": token})
    assert denied.returncode == 3 and "admin" in denied.stderr


# --- fleet commands ---------------------------------------------------------------------

# Commands run in the worker's work dir (worker0, worker1): the nodes answer differently.
PER_NODE = 'case "$PWD" in *worker1) echo one-out; echo one-err >&2; exit 3;; esac; echo zero'


def test_run_prints_each_node_and_exits_with_the_worst(fleet: Fleet) -> None:
    result = fleet.gdos("run", "w0", "w1", "--", PER_NODE)
    assert result.returncode == 3, result
    out = result.stdout
    blocks = {b.split(" ", 1)[0]: b for b in out.split("=== ") if b}  # by alias
    assert set(blocks) == {"w0", "w1"}
    assert blocks["w0"].startswith("w0 (exit 0, ") and "zero" in blocks["w0"]
    assert blocks["w1"].startswith("w1 (exit 3, ") and "one-out" in blocks["w1"]
    assert "one-err" in result.stderr and "one-err" not in out

    ok = fleet.gdos("run", "--all", "--", "echo", "$((40+2))")
    assert ok.returncode == 0 and ok.stdout.count("42") == 2

    timed_out = fleet.gdos("run", "w0", "--timeout", "1", "--", "sleep 30")
    assert timed_out.returncode == 124 and "timed out" in timed_out.stdout

    streamed = fleet.gdos("run", "w1", "-s", "--", "echo a; sleep 1; echo b")
    assert streamed.returncode == 0
    lines = streamed.stdout.splitlines()
    assert lines == ["w1 | a", "w1 | b"]

    as_json = fleet.gdos("run", "w0", "w1", "-o", "json", "--", PER_NODE)
    assert as_json.returncode == 3
    whole = json.loads(as_json.stdout)
    assert sorted(n["exit_code"] for n in whole["nodes"]) == [0, 3]

    missing = fleet.gdos("run", "w0")
    assert missing.returncode == 2 and "no command" in missing.stderr


# --- alerts, audit, backups -------------------------------------------------------------


def test_alerts_audit_and_backups(fleet: Fleet) -> None:
    with fleet.client() as gdos:
        rule = gdos.create_alert_rule("CPU hot", "cpu", ">", 99.5, for_seconds=60)
    rules = _json(fleet.gdos("alerts", "rules", "-o", "json"))
    assert [r["id"] for r in rules] == [rule.id]  # type: ignore[union-attr]
    assert "CPU hot" in fleet.gdos("alerts", "rules").stdout
    assert fleet.gdos("alerts").returncode == 0

    audit = _json(fleet.gdos("audit", "--action", "alert_rule.", "-o", "json"))
    assert isinstance(audit, dict) and audit["total"] >= 1
    assert [e["action"] for e in audit["items"]] == ["alert_rule.create"]

    made = _json(fleet.gdos("backup", "create", "-o", "json"))
    assert isinstance(made, dict)
    listed = fleet.gdos("backup")
    assert listed.returncode == 0 and made["name"] in listed.stdout
    dest = fleet.tmp / "backup.tar.gz"
    saved = fleet.gdos("backup", "download", made["name"], "-O", str(dest))
    assert saved.returncode == 0 and dest.stat().st_size == made["size"]
    refused = fleet.gdos("backup", "restore", made["name"])
    assert refused.returncode == 2 and "--yes" in refused.stderr
    deleted = fleet.gdos("backup", "delete", "--yes", made["name"])
    assert deleted.returncode == 0
    assert made["name"] not in fleet.gdos("backup", "list").stdout


# --- rollouts ---------------------------------------------------------------------------


def test_rollout_followed_to_done_listed_and_rolled_back_detached(fleet: Fleet) -> None:
    newer = _build(fleet.tmp / "roll", "hello", "1.1.0")
    assert fleet.gdos("push", str(newer)).returncode == 0
    with fleet.client() as gdos:
        system = gdos.create_system("roll")
        module = gdos.create_module(system.id, "web", "hello", "1.0.0")
        placed = [gdos.deploy(module.id, node, wait="running") for node in fleet.nodes.values()]

    started = fleet.gdos(
        "rollout", "start", "roll/web", "1.1.0", "--wait", "running", "--max-parallel", "2"
    )
    assert started.returncode == 0, started
    out = started.stdout
    assert out.startswith("rollout ") and "roll/web hello 1.0.0 -> 1.1.0, 2 instance(s)" in out
    for instance in placed:  # each instance's steps, live, by node alias
        steps = [line for line in out.splitlines() if line.startswith(f"  {instance.id[:8]} on")]
        assert steps and steps[-1].endswith(": done"), out
    assert "\nrollout " in out and ": done in " in out  # the end, then the final state
    with fleet.client() as gdos:
        versions = {i.version for i in gdos.list_instances(module_id=module.id)}
    assert versions == {"1.1.0"}

    listed = _json(fleet.gdos("rollout", "list", "roll/web", "-o", "json"))
    assert isinstance(listed, list) and len(listed) == 1
    first = listed[0]
    assert (first["state"], first["to_version"], first["kind"]) == ("done", "1.1.0", "rollout")
    assert first["id"][:8] in fleet.gdos("rollout", "list").stdout

    detached = fleet.gdos("rollout", "back", "roll/web", "--detach", "--wait", "running")
    assert detached.returncode == 0, detached
    assert "rollback" in detached.stdout and "1.1.0 -> 1.0.0" in detached.stdout
    back = _json(fleet.gdos("rollout", "list", "roll/web", "-o", "json"))[0]  # type: ignore[index]
    prefix = back["id"][:8]
    followed = fleet.gdos("rollout", "status", "-f", prefix)  # by id prefix
    assert followed.returncode == 0, followed
    status = _json(fleet.gdos("rollout", "status", prefix, "-o", "json"))
    assert isinstance(status, dict)
    assert (status["id"], status["state"], status["kind"]) == (back["id"], "done", "rollback")
    table = fleet.gdos("rollout", "status", prefix).stdout
    assert "STEP" in table and table.count("done") >= 3  # the rollout's row and each instance
    with fleet.client() as gdos:
        versions = {i.version for i in gdos.list_instances(module_id=module.id)}
    assert versions == {"1.0.0"}

    again = fleet.gdos("rollout", "promote", prefix)  # it has ended: a conflict
    assert again.returncode == 5 and again.stderr.startswith("gdos: error: ")
    missing = fleet.gdos("rollout", "status", "ffffffff")
    assert missing.returncode == 4 and "no rollout 'ffffffff'" in missing.stderr


def test_a_rollout_that_fails_is_reverted_and_exits_1(fleet: Fleet) -> None:
    crashing = _build(fleet.tmp / "sour", "hello", "1.2.0", service="crasher")
    assert fleet.gdos("push", str(crashing)).returncode == 0
    with fleet.client() as gdos:
        system = gdos.create_system("sour")
        module = gdos.create_module(system.id, "web", "hello", "1.0.0")
        placed = gdos.deploy(module.id, fleet.nodes["w0"], wait="running")

    short = fleet.gdos("rollout", "start", "sour/web", "1.2.0", "--healthy-deadline", "5")
    assert short.returncode == 2 and "healthy_deadline must be greater" in short.stderr
    with fleet.client() as gdos:
        assert gdos.list_rollouts(module_id=module.id) == []  # nothing was asked for

    result = fleet.gdos(
        "rollout", "start", "sour/web", "1.2.0", "--min-healthy-time", "1",
        "--healthy-deadline", "30", "--progress-deadline", "60",
    )  # fmt: skip
    assert result.returncode == 1, result
    steps = [line for line in result.stdout.splitlines() if line.startswith(f"  {placed.id[:8]}")]
    # Its "failed" step may be merged into "reverting" (frames are at most 2 a second).
    assert any(": crashed on 1.2.0: exited with code 3" in line for line in steps), result.stdout
    assert ": reverted: crashed" in steps[-1], result.stdout  # auto-revert: the CLI's default
    assert ": reverted in " in result.stdout and "error: " in result.stdout
    with fleet.client() as gdos:
        assert gdos.get_instance(placed.id).version == "1.0.0"


def test_rollouts_are_paused_resumed_promoted_and_aborted_by_id_prefix(fleet: Fleet) -> None:
    with fleet.client() as gdos:
        for version in ("1.3.0", "1.4.0"):
            gdos.upload_package(_build(fleet.tmp / "steer", "hello", version))
        system = gdos.create_system("steer")
        module = gdos.create_module(system.id, "web", "hello", "1.3.0")
        for node in fleet.nodes.values():
            gdos.deploy(module.id, node, wait="running")

    def status(prefix: str) -> dict[str, object]:
        found = _json(fleet.gdos("rollout", "status", prefix, "-o", "json"))
        assert isinstance(found, dict)
        return found

    def begin(*args: str) -> str:
        started = _json(
            fleet.gdos("rollout", "start", "steer/web", *args, "--detach", "-o", "json")
        )
        assert isinstance(started, dict)
        return str(started["id"])[:8]

    # Pause while the first instance proves itself (4 s); resume; it ends done.
    prefix = begin("1.4.0", "--wait", "stable", "--min-healthy-time", "4")
    paused = _json(fleet.gdos("rollout", "pause", prefix, "-o", "json"))
    assert paused["state"] == "paused"  # type: ignore[index]
    wait_until(
        lambda: status(prefix)["items"][0]["state"] == "done",  # type: ignore[index]
        timeout=30,
        what="the instance under way finishes while paused",
    )
    assert status(prefix)["items"][1]["state"] == "waiting"  # type: ignore[index]
    assert fleet.gdos("rollout", "resume", prefix).returncode == 0
    assert fleet.gdos("rollout", "status", "-f", prefix).returncode == 0

    # A canary, then promote.
    prefix = begin("1.3.0", "--wait", "running", "--canary", "1")
    wait_until(
        lambda: status(prefix)["state"] == "awaiting_promotion", timeout=30, what="the canary"
    )
    refused = fleet.gdos("rollout", "pause", prefix)  # only while running
    assert refused.returncode == 5 and refused.stderr.startswith("gdos: error: ")
    promoted = fleet.gdos("rollout", "promote", prefix)
    assert promoted.returncode == 0, promoted
    assert fleet.gdos("rollout", "status", "-f", prefix).returncode == 0

    # A canary, then abort with --revert: following it ends 1 (reverted).
    prefix = begin("1.4.0", "--wait", "running", "--canary", "1", "--no-auto-revert")
    wait_until(
        lambda: status(prefix)["state"] == "awaiting_promotion", timeout=30, what="the canary"
    )
    aborted = fleet.gdos("rollout", "abort", "--revert", prefix)
    assert aborted.returncode == 0, aborted
    followed = fleet.gdos("rollout", "status", "-f", prefix)
    assert followed.returncode == 1 and ": reverted" in followed.stdout, followed
    with fleet.client() as gdos:
        versions = {i.version for i in gdos.list_instances(module_id=module.id)}
    assert versions == {"1.3.0"}
