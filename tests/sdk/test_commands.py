"""Fleet commands on one machine: output, exit codes, and the timeout that kills the group."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import psutil
import pytest

from gdos_sdk.commands import CommandRequest, run_command

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell syntax")


def _run(command: str, timeout: float, tag: str = "cmd-test") -> tuple[dict[str, str], object]:
    seen: dict[str, str] = {"stdout": "", "stderr": ""}

    def on_output(stream: str, text: str) -> None:
        seen[stream] += text

    result = asyncio.run(run_command(command, timeout=timeout, tag=tag, on_output=on_output))
    return seen, result


def test_output_per_stream_and_exit_code() -> None:
    seen, result = _run("echo out; echo err >&2; exit 3", 10)
    assert seen == {"stdout": "out\n", "stderr": "err\n"}
    assert result.exit_code == 3 and not result.timed_out  # type: ignore[attr-defined]


def test_timeout_kills_the_whole_group_and_escapees(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # A child in the group and a grandchild that left it with setsid: both must die.
    command = (
        f"sleep 300 & echo $! >> {pids}; "
        f"setsid sh -c 'echo $$ >> {pids}; exec sleep 300' & "
        "echo started; sleep 300"
    )
    began = time.monotonic()
    seen, result = _run(command, 1.5, tag="cmd-timeout-test")
    assert time.monotonic() - began < 10
    assert result.timed_out and result.exit_code is None  # type: ignore[attr-defined]
    assert seen["stdout"] == "started\n"
    found = [int(p) for p in pids.read_text().split()]
    assert len(found) == 2

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 5
    while not all(gone(p) for p in found) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(p) for p in found), found


def test_output_over_the_limit_is_truncated_not_blocking() -> None:
    seen: dict[str, str] = {"stdout": "", "stderr": ""}

    def on_output(stream: str, text: str) -> None:
        seen[stream] += text

    result = asyncio.run(
        run_command(
            "head -c 300000 /dev/zero | tr '\\0' x; echo done >&2",
            timeout=20,
            tag="cmd-trunc",
            on_output=on_output,
            max_output=1000,
        )
    )
    assert len(seen["stdout"]) == 1000 and result.truncated and result.exit_code == 0
    assert seen["stderr"] == "done\n"


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="node_ids must have at least one entry"):
        CommandRequest(node_ids=[], command="ls")
    with pytest.raises(ValueError, match="not blank"):
        CommandRequest(node_ids=["n"], command="  ")
    with pytest.raises(ValueError, match="timeout"):
        CommandRequest(node_ids=["n"], command="ls", timeout=0)
