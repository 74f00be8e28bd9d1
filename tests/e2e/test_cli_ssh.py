"""``gdos ssh`` in a real pseudo-terminal, through a proxy that can cut the connection."""

from __future__ import annotations

import os
import select
import shlex
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import psutil
import pytest
from ptyprocess import PtyProcess

from gdos_sdk import Client
from gdos_sdk.terminal import TerminalState
from gdos_sdk.terminal_client import Terminal, TerminalNotice
from gdos_sdk.testing import LocalCluster, wait_until

from .cli_helpers import gdos_argv, isolated_env
from .proxy import TcpProxy

pytestmark = pytest.mark.e2e

# An explicit shell: a login profile may run slow hooks (see tests/e2e/test_terminal.py).
SHELL = {"OPS_WORKER_TERMINAL_SHELL": "/bin/bash --noprofile --norc -i"}


@attrs.frozen
class Site:
    cluster: LocalCluster
    proxy: TcpProxy
    env: dict[str, str]
    tmp: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("ssh")
    cluster = LocalCluster(tmp / "cluster")
    try:
        cluster.start_master()
        node_id = cluster.wait_worker_connected(cluster.start_worker(env=SHELL))
        with cluster.client() as gdos:
            gdos.update_node(node_id, alias="box")
        with TcpProxy(cluster.master_port) as proxy:
            env = isolated_env(
                tmp / "config.toml", GDOS_URL=proxy.url, GDOS_TOKEN=cluster.admin_token()
            )
            env["TERM"] = "xterm"
            yield Site(cluster, proxy, env, tmp)
    finally:
        cluster.close()


class Screen:
    """A process in a PTY, and everything it printed."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int, cols: int) -> None:
        self.proc = PtyProcess.spawn(argv, env=env, dimensions=(rows, cols))
        self.seen = b""

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.proc.fd], [], [], timeout)
        if ready:
            try:
                self.seen += os.read(self.proc.fd, 65536)
            except OSError:  # the child exited and the PTY closed
                time.sleep(timeout)

    def expect(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen; screen so far: {self.seen[-3000:]!r}")
            self._pump(0.1)

    def type(self, text: str) -> None:
        self.proc.write(text.encode())

    def count(self, text: str) -> int:
        return self.seen.count(text.encode())

    def close(self) -> None:
        if self.proc.isalive():
            self.proc.terminate(force=True)
        self.proc.close(force=True)


def test_ssh_types_resizes_reattaches_and_restores_the_terminal(site: Site) -> None:
    before, after = site.tmp / "stty.before", site.tmp / "stty.after"
    gdos = shlex.join([*gdos_argv(), "ssh", "box"])
    script = f'stty -g > {before}; {gdos}; echo "gdos-exit=$?"; stty -g > {after}; sleep 5'
    screen = Screen(["/bin/sh", "-c", script], site.env, 24, 80)
    try:
        screen.type("echo hello-$((6*7))\r")
        screen.expect("hello-42")
        screen.type("stty size\r")
        screen.expect("24 80")

        # The window changes: SIGWINCH reaches gdos, which tells the remote PTY.
        screen.proc.setwinsize(33, 101)
        wait_until(
            lambda: _live_size(site) == (33, 101), timeout=20, what="the resize to reach the master"
        )
        screen.type("stty size\r")
        screen.expect("33 101")

        # The network drops while the shell is busy: gdos reattaches to the same shell, shows
        # what it printed meanwhile, and nothing twice.
        screen.type("sleep 1; echo while-away-$((2+3))\r")
        screen.expect("sleep 1; echo while-away")
        assert site.proxy.cut() >= 1
        screen.expect("[gdos: connection lost")
        screen.expect("[gdos: reattached")
        screen.expect("while-away-5")
        screen.type("echo after-$((1+1))\r")
        screen.expect("after-2")
        assert screen.count("hello-42") == 1 and screen.count("while-away-5") == 1
        assert screen.count("33 101") == 1

        screen.type("exit 7\r")
        screen.expect("gdos-exit=7")
        screen.expect("Connection to ")
        wait_until(
            lambda: after.exists() and after.read_text().strip(),
            timeout=10,
            what="the terminal settings after gdos",
        )
        assert after.read_text() == before.read_text()  # the tty is as gdos found it
    finally:
        screen.close()
    with site.cluster.client() as client:
        ended = client.list_terminal_sessions().items
        assert [s.reason for s in ended if s.state == TerminalState.CLOSED] == ["exited"]


def _live_size(site: Site) -> tuple[int, int] | None:
    with site.cluster.client() as client:
        live = client.list_terminal_sessions(live=True).items
    return (live[0].rows, live[0].cols) if live else None


# --- the SDK's blocking terminal (the same protocol, without a PTY of our own) ---------


def _read_until(term: Terminal, text: bytes, timeout: float = 20.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{text!r} not seen in {seen[-2000:]!r}")
        try:
            chunk = term.read(timeout=left)
        except TimeoutError:
            continue
        if not chunk:
            raise AssertionError(f"the terminal ended before {text!r}: {seen[-2000:]!r}")
        seen += chunk
    return seen


def test_the_blocking_terminal_reattaches_and_learns_an_end_it_missed(site: Site) -> None:
    notices: list[TerminalNotice] = []
    with Client(site.proxy.url, token=site.cluster.admin_token()) as client:
        node = client.list_nodes()[0]
        term = client.open_terminal(node.id, rows=30, cols=90, on_notice=notices.append)
        try:
            term.write("echo one-$((1+1))\r")
            _read_until(term, b"one-2")
            site.proxy.cut()
            # Reading notices the drop and reattaches; nothing new is replayed. (Keys written
            # in the instant before a drop is noticed can be lost, as with ssh: no input acks.)
            with pytest.raises(TimeoutError):
                term.read(timeout=5)
            assert [n.kind for n in notices] == ["dropped", "reattached"]
            term.write("echo two-$((1+2))\r")  # sent after reattaching
            seen = _read_until(term, b"two-3")
            assert [n.kind for n in notices] == ["dropped", "reattached"]
            assert b"one-2" not in seen  # shown once, before the drop
            # The shell exits while the path is dead, then the connection drops: the exit
            # frame never reaches us, so the end comes from the API on reattaching.
            term.write("sleep 1; exit 5\r")
            _read_until(term, b"exit 5")  # the keys reached the shell (it echoed them)
            site.proxy.freeze()
            wait_until(
                lambda: client.get_terminal_session(term.id).ended_at is not None,
                timeout=20,
                what="the shell to exit",
            )
            site.proxy.cut()
            while term.read(timeout=20):
                pass
            assert (term.ended, term.exit_code, term.reason) == (True, 5, "exited")
        finally:
            term.close()


def test_a_logged_in_session_opens_a_terminal_too(site: Site) -> None:
    with Client(site.cluster.url, token="") as client:
        client.login("admin", site.cluster.admin_password)
        node = client.list_nodes()[0]
        with client.open_terminal(node.id) as term:
            term.write("echo cookie-$((3*3))\r")
            _read_until(term, b"cookie-9")
        assert term.ended and term.reason == "closed"


def test_ssh_stopped_by_a_signal_restores_the_tty_and_the_shell_waits(site: Site) -> None:
    before, after = site.tmp / "term.before", site.tmp / "term.after"
    gdos = shlex.join([*gdos_argv(), "ssh", "box"])
    script = f'stty -g > {before}; {gdos}; echo "gdos-exit=$?"; stty -g > {after}; sleep 5'
    screen = Screen(["/bin/sh", "-c", script], site.env, 24, 80)
    try:
        screen.type("cd /tmp && echo first-$((2*5))\r")
        screen.expect("first-10")
        (child,) = psutil.Process(screen.proc.pid).children()
        child.send_signal(signal.SIGTERM)
        screen.expect("gdos-exit=143")
        wait_until(lambda: after.exists() and after.read_text().strip(), timeout=10, what="stty")
        assert after.read_text() == before.read_text()
        text = screen.seen.decode(errors="replace")
        session_id = text.split("--session ")[1].split()[0]
    finally:
        screen.close()
    # The shell is still there: reattach to it by id, in the same directory.
    again = Screen([*gdos_argv(), "ssh", "box", "--session", session_id], site.env, 24, 80)
    try:
        again.type("pwd; exit 0\r")
        again.expect("/tmp\r\n")
        again.expect("Connection to ")
    finally:
        again.close()
