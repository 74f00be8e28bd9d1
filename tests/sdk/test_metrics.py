"""Fingerprint and samplers against this machine and real child processes."""

from __future__ import annotations

import ipaddress
import os
import platform
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import gdos_sdk.metrics
from gdos_sdk.metrics import (
    NodeSampler,
    ProcessTreeSampler,
    collect_fingerprint,
    local_addresses,
)

from ..helpers.clock import FakeClock

MiB = 2**20


class Child:
    """A Python child that announces each step on stdout and waits for "go" lines on stdin."""

    def __init__(self, code: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def expect(self, word: str) -> None:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline().strip()
        assert line == word, f"child said {line!r}, expected {word!r}"

    def go(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write("go\n")
        self.popen.stdin.flush()

    def close(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.communicate(timeout=10)  # closes the pipes and reaps


@pytest.fixture
def child() -> Iterator[Callable[[str], Child]]:
    started: list[Child] = []

    def start(code: str) -> Child:
        started.append(Child(code))
        return started[-1]

    yield start
    for each in started:
        each.close()


# --- fingerprint ----------------------------------------------------------------------------


def test_fingerprint_describes_this_machine() -> None:
    fp = collect_fingerprint()
    assert fp.os == platform.system()
    assert fp.kernel == platform.release()
    assert fp.arch == platform.machine()
    assert fp.os_version
    assert fp.cpu_model
    assert fp.cpu_cores == os.cpu_count()
    assert 1 <= fp.cpu_physical_cores <= fp.cpu_cores
    assert fp.memory_bytes > 64 * MiB
    assert fp.python == platform.python_version()
    assert 0 < fp.boot_time < time.time()
    assert fp.disks, "at least one real file system"
    assert all(d.total_bytes > 0 and d.mountpoint and d.fstype for d in fp.disks)
    assert all(d.fstype not in gdos_sdk.metrics.PSEUDO_FILESYSTEMS for d in fp.disks)
    assert len({d.mountpoint for d in fp.disks}) == len(fp.disks)
    assert all(re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac) for mac in fp.macs)
    assert "00:00:00:00:00:00" not in fp.macs
    machine_id = Path("/etc/machine-id")
    if machine_id.exists() and machine_id.read_text().strip():
        assert fp.machine_id == machine_id.read_text().strip()
    if Path("/etc/os-release").exists():
        assert fp.os_version in Path("/etc/os-release").read_text()


def test_local_addresses_prefer_real_interfaces() -> None:
    addresses = [ipaddress.ip_address(a) for a in local_addresses()]
    assert addresses
    if not all(a.is_loopback for a in addresses):
        assert not any(a.is_loopback for a in addresses)
    assert [a.version for a in addresses] == sorted(a.version for a in addresses)


# --- node -----------------------------------------------------------------------------------


def test_node_sample_is_sane_and_rates_use_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    sampler = NodeSampler.from_fingerprint(collect_fingerprint(), clock=clock)
    with open(tmp_path / "blob", "wb") as f:
        f.write(os.urandom(8 * MiB))
        f.flush()
        os.fsync(f.fileno())
    clock.now += 1.0
    sample = sampler.sample()
    assert 0 <= sample.cpu_percent <= 100
    assert sample.load1 >= 0
    assert 0 < sample.mem_used <= sample.mem_total
    assert 0 <= sample.mem_percent <= 100
    assert 0 <= sample.swap_used <= max(sample.swap_total, 0) or sample.swap_total == 0
    assert sample.uptime_seconds > 0
    assert abs(sample.ts - time.time()) < 5
    assert "/" in {d.mountpoint for d in sample.disks} or os.name != "posix"
    assert all(0 < d.used_bytes <= d.total_bytes for d in sample.disks)
    # fsync'd 8 MiB within one fake second.
    assert sample.disk_write_bps >= 4 * MiB
    assert all(r.rx_bps >= 0 and r.tx_bps >= 0 for r in sample.net)
    assert "lo" not in {r.interface for r in sample.net}

    again = sampler.sample()  # no time passed on the fake clock: no rate, no division by zero
    assert again.disk_write_bps == again.disk_read_bps == 0.0


# --- process trees --------------------------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["procfs", "psutil"])
def procfs(request: pytest.FixtureRequest) -> bool:
    """Both readers: /proc directly (Linux) and psutil (every other platform)."""
    if request.param and not sys.platform.startswith("linux"):
        pytest.skip("/proc reader is Linux only")
    return bool(request.param)


BUSY = """
    import sys
    print("ready", flush=True)
    while True:
        pass
"""

IDLE = """
    import sys, time
    print("ready", flush=True)
    time.sleep(600)
"""

BURST_THEN_SLEEP = """
    import sys, time
    print("ready", flush=True)
    sys.stdin.readline()
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        pass
    print("done", flush=True)
    time.sleep(600)
"""

ALLOCATE = """
    import sys, time
    print("ready", flush=True)
    sys.stdin.readline()
    block = b"x" * (200 * 2**20)  # written, so the pages are resident
    print("done", flush=True)
    time.sleep(600)
"""

WRITE_FILE = """
    import os, sys, time
    print("ready", flush=True)
    sys.stdin.readline()
    with open("{path}", "wb") as f:
        f.write(os.urandom(16 * 2**20))
    print("done", flush=True)
    time.sleep(600)
"""

TREE_OF_THREE = """
    import os, time
    if os.fork() == 0:
        if os.fork() == 0:
            time.sleep(600)
        time.sleep(600)
    time.sleep(0.2)
    print("ready", flush=True)
    time.sleep(600)
"""


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def test_cpu_is_current_not_lifetime(child: Callable[[str], Child], procfs: bool) -> None:
    busy, idle, burst = child(BUSY), child(IDLE), child(BURST_THEN_SLEEP)
    for each in (busy, idle, burst):
        each.expect("ready")
    sampler = ProcessTreeSampler(procfs=procfs)
    for name, each in (("busy", busy), ("idle", idle), ("burst", burst)):
        first = sampler.sample(name, each.pid)
        assert first is not None
        assert first.cpu_percent == 0.0  # first sight: no interval yet
    # What the busy process really burned over the same interval, read independently: on
    # a loaded 2-core machine a spinning process may get far less than a core.
    busy_cpu, began = _cpu_seconds(busy.pid), time.monotonic()
    burst.go()
    burst.expect("done")  # it spun for a second of wall time, then went to sleep
    time.sleep(0.5)
    busy_share = (_cpu_seconds(busy.pid) - busy_cpu) / (time.monotonic() - began) * 100
    busy_now = sampler.sample("busy", busy.pid)
    idle_now = sampler.sample("idle", idle.pid)
    burst_now = sampler.sample("burst", burst.pid)
    assert busy_now is not None and idle_now is not None and burst_now is not None
    assert busy_share > 5, busy_share  # it did run
    assert abs(busy_now.cpu_percent - busy_share) < 15, (busy_now.cpu_percent, busy_share)
    assert idle_now.cpu_percent < 5
    assert burst_now.cpu_percent > 2  # it did burn (how much depends on the noisy host)
    time.sleep(0.5)
    # A lifetime figure would still show most of the burst; the current one shows sleep.
    burst_later = sampler.sample("burst", burst.pid)
    assert burst_later is not None
    assert burst_later.cpu_percent < 10


def test_rss_grows_when_a_child_allocates(child: Callable[[str], Child], procfs: bool) -> None:
    proc = child(ALLOCATE)
    proc.expect("ready")
    sampler = ProcessTreeSampler(table_max_age=0, procfs=procfs)
    before = sampler.sample("a", proc.pid)
    proc.go()
    proc.expect("done")
    after = sampler.sample("a", proc.pid)
    assert before is not None and after is not None
    assert after.rss_bytes - before.rss_bytes > 150 * MiB


def test_write_rate_when_a_child_writes_a_file(
    child: Callable[[str], Child], tmp_path: Path, procfs: bool
) -> None:
    proc = child(WRITE_FILE.replace("{path}", str(tmp_path / "out.bin")))
    proc.expect("ready")
    clock = FakeClock()
    sampler = ProcessTreeSampler(clock=clock, table_max_age=0, procfs=procfs)
    assert sampler.sample("w", proc.pid) is not None
    proc.go()
    proc.expect("done")
    clock.now += 2.0
    sample = sampler.sample("w", proc.pid)
    assert sample is not None
    # 16 MiB in two fake seconds; dirtied page-cache pages count as written.
    assert 4 * MiB <= sample.write_bps <= 16 * MiB
    clock.now += 1.0
    quiet = sampler.sample("w", proc.pid)
    assert quiet is not None
    assert quiet.write_bps == 0.0


def test_tree_totals_count_every_process_and_forget_the_gone(
    child: Callable[[str], Child], procfs: bool
) -> None:
    tree = child(TREE_OF_THREE)
    tree.expect("ready")
    sampler = ProcessTreeSampler(table_max_age=0, procfs=procfs)
    sample = sampler.sample("t", tree.pid)
    assert sample is not None
    assert sample.instance_id == "t"
    assert sample.processes == 3
    assert sample.threads >= 3
    assert sample.open_files >= 3
    assert sample.rss_bytes > 3 * MiB
    assert abs(sample.ts - time.time()) < 5

    tree.close()
    assert sampler.sample("t", tree.pid) is None
    sampler.forget("t")
    sampler.forget("never-seen")


def test_process_table_is_shared_within_a_tick(child: Callable[[str], Child]) -> None:
    clock = FakeClock()
    sampler = ProcessTreeSampler(clock=clock, table_max_age=0.5)
    assert sampler.sample("me", os.getpid()) is not None
    late = child(IDLE)
    late.expect("ready")
    # Same tick: the table read for the first instance is reused, the new process unseen yet.
    assert sampler.sample("late", late.pid) is None
    clock.now += 1.0
    sample = sampler.sample("late", late.pid)
    assert sample is not None
    assert sample.processes == 1


def test_new_main_pid_resets_the_tree(child: Callable[[str], Child], procfs: bool) -> None:
    first, second = child(BUSY), child(IDLE)
    first.expect("ready")
    second.expect("ready")
    sampler = ProcessTreeSampler(table_max_age=0, procfs=procfs)
    assert sampler.sample("x", first.pid) is not None
    time.sleep(0.2)
    restarted = sampler.sample("x", second.pid)  # the instance restarted under a new pid
    assert restarted is not None
    assert restarted.cpu_percent == 0.0


def test_exports_resolve() -> None:
    from gdos_sdk.metrics import collect, fingerprint

    for module in (gdos_sdk.metrics, collect, fingerprint):
        assert all(hasattr(module, name) for name in module.__all__)
