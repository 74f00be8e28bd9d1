"""Fleet commands and the log viewer with real workers, processes and files."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from gdos_sdk import Client
from gdos_sdk.commands import NodeRunState
from gdos_sdk.errors import PermissionDenied
from gdos_sdk.testing import LocalCluster, wait_until

from .test_lifecycle import setup_module_instance

pytestmark = pytest.mark.e2e


def _user_token(cluster: LocalCluster, gdos: Client, name: str, role: str) -> str:
    gdos.create_user(name, "a-long-password-1", role)
    with Client(cluster.url) as other:
        other.login(name, "a-long-password-1")
        return other.create_token("t").secret


def test_fleet_command_on_two_workers(cluster: LocalCluster) -> None:
    cluster.start_master()
    ids = [cluster.wait_worker_connected(cluster.start_worker()) for _ in range(2)]
    with cluster.client() as gdos:
        wait_until(
            lambda: all(gdos.get_node(i).status.value == "online" for i in ids), what="online"
        )
        run = gdos.run_command(
            ids, 'echo "out $GDOS_INSTANCE_ID"; echo oops >&2; exit 4', timeout=30
        )
        assert run.done and {n.node_id for n in run.nodes} == set(ids)
        for node in run.nodes:
            assert node.state == NodeRunState.DONE
            assert node.exit_code == 4 and not node.timed_out
            assert node.stdout == f"out cmd-{run.id}\n" and node.stderr == "oops\n"

        ok = gdos.run_command(ids[:1], "echo fine", timeout=10)
        assert ok.nodes[0].exit_code == 0 and ok.nodes[0].stdout == "fine\n"

        entries = gdos.list_audit(action="command.run").items
        assert entries and entries[0].actor and "echo fine" in str(entries[0].params)
        secret = gdos.run_command(ids[:1], "true --password hunter2 API_KEY=abc", timeout=10)
        assert secret.nodes[0].exit_code == 0
        params = str(gdos.list_audit(action="command.run").items[0].params)
        assert "hunter2" not in params and "abc" not in params and "--password ***" in params
        assert gdos.list_audit(action="command.done", target=f"command:{run.id}").items


def test_fleet_command_timeout_kills_the_group(running: LocalCluster, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    with running.client() as gdos:
        node = wait_until(
            lambda: [n for n in gdos.list_nodes() if n.status.value == "online"], what="node"
        )[0]
        command = (
            f"sleep 600 & echo $! >> {pids}; "
            f"setsid sh -c 'echo $$ >> {pids}; exec sleep 600' & "
            f"echo $$ >> {pids}; echo started; sleep 600"
        )
        began = time.monotonic()
        run = gdos.run_command([node.id], command, timeout=2)
        assert time.monotonic() - began < 20
        result = run.nodes[0]
        assert result.state == NodeRunState.DONE
        assert result.timed_out and result.exit_code is None
        assert result.stdout == "started\n"
        found = [int(p) for p in pids.read_text().split()]
        assert len(found) == 3

        def all_gone() -> bool:
            for pid in found:
                try:
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        return False
                except psutil.NoSuchProcess:
                    pass
            return True

        wait_until(all_gone, timeout=10, what="every process of the command to be gone")


def test_viewer_and_operator_cannot_run_commands(running: LocalCluster) -> None:
    with running.client() as gdos:
        node_id = gdos.list_nodes()[0].id
        for name, role in (("vera", "viewer"), ("otto", "operator")):
            token = _user_token(running, gdos, name, role)
            with running.client(token) as other:
                with pytest.raises(PermissionDenied):
                    other.start_command([node_id], "id", timeout=5)
                with pytest.raises(PermissionDenied):
                    other.list_commands()


def _raw_exchange(port: int, head: str) -> tuple[str, dict[str, str]]:
    """Send a request head (no body yet) on a fresh socket; the status line and headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed before an answer: {data!r}"
            data += chunk
    status, *lines = data.split(b"\r\n\r\n")[0].decode("latin1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status, {k.lower(): v.lower() for k, v in headers.items()}


def test_a_refusal_before_the_body_is_read_closes_the_connection(running: LocalCluster) -> None:
    """The cause of a "Server disconnected" flake: a 403 decided before the body arrived.

    Hypercorn closes such a connection after the answer; the answer must say so, or the
    client keeps the connection for its next request and finds it closed.
    """
    with running.client() as gdos:
        token = _user_token(running, gdos, "vic", "viewer")
    auth = f"Host: m\r\nAuthorization: Bearer {token}\r\n"
    post = (
        f"POST /api/v1/commands HTTP/1.1\r\n{auth}"
        "Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    )  # the 40 bytes of body never come: the answer does not wait for them
    status, headers = _raw_exchange(running.master_port, post)
    assert status.startswith("HTTP/1.1 403") and headers.get("connection") == "close", headers
    # A refusal without a body keeps the connection alive, as any other answer.
    status, headers = _raw_exchange(
        running.master_port, f"GET /api/v1/commands HTTP/1.1\r\n{auth}\r\n"
    )
    assert status.startswith("HTTP/1.1 403") and headers.get("connection") != "close", headers


def test_log_tail_follows_rotation_and_refuses_other_paths(
    running: LocalCluster, pack: Callable[..., Path], tmp_path: Path
) -> None:
    with running.client() as gdos:
        node = wait_until(
            lambda: [n for n in gdos.list_nodes() if n.status.value == "online"], what="node"
        )[0]
        instance = setup_module_instance(
            gdos, node.id, pack("rotating", log_paths=["logs/app.log"]), start=True
        )
        names = wait_until(
            lambda: [f.name for f in gdos.list_log_files(instance.id) if f.size],
            what="log files",
        )
        assert "console.log" in names and "logs/app.log" in names

        # Tail, then follow for several rotations (every 25 lines, about 1 s): no line lost.
        first = gdos.read_log(instance.id, "logs/app.log", lines=5)
        text, rotations = first.text, 0
        chunk = first
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            chunk = gdos.read_log(instance.id, "logs/app.log", cursor=chunk.cursor, wait=2)
            text += chunk.text
            rotations += chunk.rotated
        numbers = [int(n) for n in re.findall(r"^line (\d+)$", text, re.M)]
        assert rotations >= 2, text
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
        assert len(numbers) > 60

        found = gdos.search_log(instance.id, "console.log", "LOGGER UP")
        assert [m.text for m in found.matches] == ["rotating logger up"] and found.total == 1
        console = gdos.read_log(instance.id, "console.log", lines=10)
        assert "rotating logger up" in console.text
        saved = gdos.download_log(instance.id, "console.log", tmp_path / "console.txt")
        assert "rotating logger up" in saved.read_text()

        outside = tmp_path / "outside.txt"
        outside.write_text("secret")
        for bad, problem in (
            ("../../etc/passwd", "path traversal"),
            ("/etc/passwd", "absolute path not declared"),
            (str(outside), "absolute path not declared"),
            ("main.py", "not a log file"),
        ):
            with pytest.raises(PermissionDenied, match=problem):
                gdos.read_log(instance.id, bad)
        with pytest.raises(PermissionDenied):
            gdos.search_log(instance.id, "../../etc/passwd", "root")
        with pytest.raises(PermissionDenied):
            gdos.download_log(instance.id, "/etc/passwd", tmp_path / "x")
        refused = gdos.list_audit(action="log.refused", target=f"instance:{instance.id}").items
        assert any("../../etc/passwd" in str(e.params) for e in refused)
        assert any(e.params.get("file") == "/etc/passwd" for e in refused)
        assert running.master is not None
        assert "refused log file '../../etc/passwd'" in running.master.output()

        token = _user_token(running, gdos, "vic", "viewer")
        with running.client(token) as viewer, pytest.raises(PermissionDenied):
            viewer.list_log_files(instance.id)
        gdos.destroy_instance(instance.id)
