"""gdos_sdk.parentwatch: a throw-away server ends with the process that started it, and
only then."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from gdos_sdk.parentwatch import ParentWatch, started


def test_a_live_parent_stays_alive_when_the_wall_clock_is_stepped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found when a master under a CI run shut itself down: psutil derives a start time
    # from the boot time, which Linux reports as "now minus uptime", so a clock step (NTP,
    # a resumed virtual machine) moved it and the parent looked like another process.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as child:
        try:
            watch = ParentWatch(child.pid)
            assert watch.alive()
            real = psutil.Process.create_time
            monkeypatch.setattr(psutil.Process, "create_time", lambda p: real(p) + 3.0)
            monkeypatch.setattr(psutil, "boot_time", lambda: 3.0)
            if sys.platform == "linux":
                assert watch.alive()  # clock ticks since boot: no clock step moves them
            child.kill()
            child.wait()
            assert not watch.alive()
        finally:
            if child.poll() is None:
                child.kill()


def test_the_start_time_reads_a_process_whose_name_holds_spaces_and_parentheses(
    tmp_path: Path,
) -> None:
    odd = tmp_path / "a (b) c"  # the kernel's name of the process (comm) comes from this
    odd.symlink_to(sys.executable)
    with subprocess.Popen([str(odd), "-c", "import time; time.sleep(60)"]) as child:
        try:
            if sys.platform == "linux":
                with open(f"/proc/{child.pid}/stat", "rb") as stat:
                    assert b"(a (b) c)" in stat.read()
            first = started(child.pid)
            assert first is not None and first == started(child.pid)
            assert ParentWatch(child.pid).alive()
        finally:
            child.kill()
            child.wait()
    assert started(child.pid) is None


def test_no_such_process_has_no_start_time_and_is_not_alive() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as child:
        child.wait()
    assert started(child.pid) is None
    assert not ParentWatch(child.pid).alive()
