"""Per-second samples of a node and of each instance's process tree.

Both samplers keep state between calls so that every figure is a rate over
the last interval: CPU % is what was used since the previous sample (not a
lifetime average), IO and network are bytes per second since then. The clock
is injected, so rates are testable without sleeping.

Cost matters: the worker samples every instance every second and must stay
under 2 % of a core. :class:`ProcessTreeSampler` therefore reads the process
table once per tick for all instances (on Linux one ``/proc/<pid>/stat`` read
per process gives parent, CPU, threads and RSS), then only each tree
member's IO counters and descriptor count; it counts file descriptors rather
than listing open files. Other platforms use cached :class:`psutil.Process`
objects read under ``oneshot()``.

Example::

    node = NodeSampler.from_fingerprint(collect_fingerprint())
    trees = ProcessTreeSampler()
    while True:
        send(node.sample(), [trees.sample(i.id, i.pid) for i in running])
        await anyio.sleep(1)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import attrs
import psutil

from gdos_sdk.models import DiskUsage, Fingerprint, InstanceSample, NetRate, NodeSample

__all__ = ["NodeSampler", "ProcessTreeSampler"]

Clock = Callable[[], float]


def _cpu_total_and_busy() -> tuple[float, float]:
    """Seconds of CPU time since boot: (all, busy), summed over every CPU."""
    times = psutil.cpu_times()
    # As psutil.cpu_percent computes it: guest time is already inside user/nice
    # on Linux, and idle + iowait is time the CPU had nothing to run.
    total = sum(times)
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    busy = total - times.idle - getattr(times, "iowait", 0.0)
    return total, busy


def _rate(now: int, before: int, seconds: float) -> float:
    # A counter that went down was reset (interface re-created, device re-attached).
    if seconds <= 0 or now < before:
        return 0.0
    return (now - before) / seconds


def _is_loopback(interface: str) -> bool:
    return interface == "lo" or (interface.startswith("lo") and interface[2:].isdigit())


def _uptime(boot_time: float, wall_clock: Clock) -> float:
    # CLOCK_BOOTTIME counts from boot and ignores wall-clock steps (Linux only).
    if sys.platform != "win32" and hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return max(0.0, wall_clock() - boot_time)


class NodeSampler:
    """The node's vital signs, one :class:`~gdos_sdk.models.NodeSample` per call.

    CPU % is computed from this sampler's own previous reading, so other
    ``psutil.cpu_percent()`` callers in the process do not shorten its interval.
    The constructor takes the first reading: the first :meth:`sample` already
    reports rates.

    Parameters:
        mountpoints: the file systems to report usage for (the fingerprint's disks).
        clock: monotonic clock for rates (tests pass a fake).
        wall_clock: timestamps for samples.

    Example::

        sampler = NodeSampler(["/", "/data"])
        sample = sampler.sample()  # every second
    """

    def __init__(
        self,
        mountpoints: Iterable[str] = ("/",),
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self._mountpoints = list(dict.fromkeys(mountpoints))
        self._clock = clock
        self._wall_clock = wall_clock
        self._boot_time = psutil.boot_time()
        self._cpu = _cpu_total_and_busy()
        self._disk_io = psutil.disk_io_counters()
        self._net = psutil.net_io_counters(pernic=True)
        self._at = clock()

    @classmethod
    def from_fingerprint(cls, fingerprint: Fingerprint, **kwargs: Clock) -> NodeSampler:
        """A sampler for the disks a fingerprint lists.

        Example::

            NodeSampler.from_fingerprint(collect_fingerprint())
        """
        return cls([disk.mountpoint for disk in fingerprint.disks], **kwargs)

    def sample(self) -> NodeSample:
        """Read the node now; rates cover the time since the previous call."""
        now = self._clock()
        seconds = now - self._at
        self._at = now

        total, busy = _cpu_total_and_busy()
        last_total, last_busy = self._cpu
        self._cpu = (total, busy)
        cpu = 0.0
        if total > last_total:
            cpu = min(100.0, max(0.0, (busy - last_busy) / (total - last_total) * 100))

        disk_io = psutil.disk_io_counters()
        read_bps = write_bps = 0.0
        if disk_io is not None and self._disk_io is not None:
            read_bps = _rate(disk_io.read_bytes, self._disk_io.read_bytes, seconds)
            write_bps = _rate(disk_io.write_bytes, self._disk_io.write_bytes, seconds)
        self._disk_io = disk_io

        net = psutil.net_io_counters(pernic=True)
        rates = []
        for name, counters in sorted(net.items()):
            before = self._net.get(name)
            if before is None or _is_loopback(name):
                continue  # a new interface gets a rate from its second sample
            rates.append(
                NetRate(
                    interface=name,
                    rx_bps=_rate(counters.bytes_recv, before.bytes_recv, seconds),
                    tx_bps=_rate(counters.bytes_sent, before.bytes_sent, seconds),
                )
            )
        self._net = net

        load1, load5, load15 = psutil.getloadavg()
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        return NodeSample(
            ts=self._wall_clock(),
            cpu_percent=round(cpu, 2),
            load1=load1,
            load5=load5,
            load15=load15,
            mem_total=memory.total,
            # "available" is what programs can still get; total - available is
            # what a person means by used (page cache excluded).
            mem_used=memory.total - memory.available,
            mem_percent=memory.percent,
            swap_total=swap.total,
            swap_used=swap.used,
            disk_read_bps=read_bps,
            disk_write_bps=write_bps,
            uptime_seconds=_uptime(self._boot_time, self._wall_clock),
            disks=self._disk_usage(),
            net=rates,
        )

    def _disk_usage(self) -> list[DiskUsage]:
        usage = []
        for mountpoint in self._mountpoints:
            try:
                du = psutil.disk_usage(mountpoint)
            except OSError:  # unmounted since start, or a hung network mount refusing us
                continue
            usage.append(
                DiskUsage(
                    mountpoint=mountpoint,
                    total_bytes=du.total,
                    used_bytes=du.used,
                    percent=du.percent,
                )
            )
        return usage


# --- process trees ---------------------------------------------------------------------------

_LINUX = sys.platform.startswith("linux")
# Spelt out (not `if _LINUX`) so mypy --platform win32 checks only the else branch.
if sys.platform.startswith("linux"):
    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
    _READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
else:  # the /proc readers never run here
    _CLOCK_TICKS = _PAGE_SIZE = 1
    _READ_FLAGS = os.O_RDONLY


class _Row(NamedTuple):
    """One process in the table: parent link, identity, and (on Linux) its stat figures.

    A NamedTuple, not attrs: the table builds one per process on the host every tick.
    """

    ppid: int
    start: float  # boot-relative start ticks on Linux, create time elsewhere
    zombie: bool
    cpu: float = 0.0  # CPU seconds used so far (Linux: from the same read)
    rss: int = 0
    threads: int = 0


class _Reading(NamedTuple):
    """One process's figures at one moment."""

    cpu: float  # CPU seconds used so far
    cpu_at: float  # clock time of that figure
    rss: int
    threads: int
    fds: int
    io: tuple[int, int] | None  # read_bytes, write_bytes


def _read_small(path: str) -> bytes:
    # Unbuffered: half the cost of open() for the tiny /proc files read per process per tick.
    fd = os.open(path, _READ_FLAGS)
    try:
        return os.read(fd, 8192)
    finally:
        os.close(fd)


def _linux_table() -> dict[int, _Row]:
    # One read of /proc/<pid>/stat per process gives the parent link, the start
    # time (to spot recycled pids), CPU time, threads and RSS: what psutil would
    # need four files and a lot more Python for.
    table: dict[int, _Row] = {}
    for pid in psutil.pids():
        try:
            data = _read_small(f"/proc/{pid}/stat")
        except OSError:
            continue
        # The command name may hold spaces or ")", so split after the last ")".
        # fields[0] is field 3 of proc(5), the state; fields[i] is field i + 3.
        fields = data[data.rfind(b")") + 2 :].split()
        table[pid] = _Row(
            ppid=int(fields[1]),
            start=float(fields[19]),
            zombie=fields[0] == b"Z",
            cpu=(int(fields[11]) + int(fields[12])) / _CLOCK_TICKS,
            threads=int(fields[17]),
            rss=int(fields[21]) * _PAGE_SIZE,
        )
    return table


def _portable_table() -> dict[int, _Row]:
    # Fresh objects, not process_iter()'s cache: a cached object keeps the create
    # time of an earlier holder of a recycled pid, and reuse would go unnoticed.
    table: dict[int, _Row] = {}
    for pid in psutil.pids():
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                table[proc.pid] = _Row(
                    ppid=proc.ppid(),
                    start=proc.create_time(),
                    zombie=proc.status() == psutil.STATUS_ZOMBIE,
                )
        except psutil.Error:
            continue
    return table


def _read_linux(pid: int, row: _Row, row_at: float) -> _Reading | None:
    """The figures the table lacks (fds, IO); ``None`` if the process is gone."""
    try:
        # A hot path: a plain name list, no Path object per descriptor.
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except PermissionError:  # another user's process, and we are not root
        fds = 0
    except OSError:
        return None  # exited since the table was read
    io: tuple[int, int] | None = None
    try:
        text = _read_small(f"/proc/{pid}/io")
        counters = dict(line.split(b": ", 1) for line in text.splitlines())
        # read_bytes/write_bytes: what reached the storage layer (as iotop and
        # pidstat -d report), not bytes through sockets and pipes.
        io = int(counters[b"read_bytes"]), int(counters[b"write_bytes"])
    except (OSError, KeyError, ValueError):
        pass  # not ours to read, or a kernel without per-task IO accounting
    return _Reading(cpu=row.cpu, cpu_at=row_at, rss=row.rss, threads=row.threads, fds=fds, io=io)


def _read_psutil(proc: psutil.Process, now: float) -> _Reading | None:
    try:
        with proc.oneshot():
            times = proc.cpu_times()
            rss = proc.memory_info().rss
            threads = proc.num_threads()
            fds = _fd_count(proc)
            io = _io(proc)
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return _Reading(cpu=0.0, cpu_at=now, rss=0, threads=0, fds=0, io=None)
    return _Reading(
        cpu=times.user + times.system, cpu_at=now, rss=rss, threads=threads, fds=fds, io=io
    )


def _fd_count(proc: psutil.Process) -> int:
    try:
        if sys.platform == "win32":
            return proc.num_handles()
        else:
            return proc.num_fds()
    except psutil.AccessDenied:
        return 0


def _io(proc: psutil.Process) -> tuple[int, int] | None:
    try:
        counters = proc.io_counters()
    except (psutil.AccessDenied, AttributeError, NotImplementedError):
        return None  # another user's process, or macOS (no per-process IO)
    return counters.read_bytes, counters.write_bytes


@attrs.define
class _Tracked:
    """What we remember of one process between samples, to turn totals into rates."""

    start: float
    proc: psutil.Process | None = None  # kept for the psutil path (it guards pid reuse)
    cpu: tuple[float, float] | None = None  # (CPU seconds, at)
    cpu_rate: float = 0.0
    io: tuple[int, int, float] | None = None  # (read, write, at)
    io_rate: tuple[float, float] = (0.0, 0.0)

    def update(self, reading: _Reading, now: float) -> None:
        """Fold in a new reading; rates only move once time has passed.

        A second look within the same table age (or the same fake-clock
        instant) keeps the last rate rather than dividing by zero.
        """
        if self.cpu is None or reading.cpu_at > self.cpu[1]:
            if self.cpu is not None:
                used = max(0.0, reading.cpu - self.cpu[0])
                self.cpu_rate = used / (reading.cpu_at - self.cpu[1]) * 100
            self.cpu = (reading.cpu, reading.cpu_at)
        if reading.io is None:
            self.io, self.io_rate = None, (0.0, 0.0)
        elif self.io is None or now > self.io[2]:
            if self.io is not None:
                seconds = now - self.io[2]
                self.io_rate = (
                    _rate(reading.io[0], self.io[0], seconds),
                    _rate(reading.io[1], self.io[1], seconds),
                )
            self.io = (*reading.io, now)


@attrs.define
class _Tree:
    main_pid: int
    main_start: float
    procs: dict[int, _Tracked] = attrs.field(factory=dict)


class ProcessTreeSampler:
    """Per-instance totals over the main process and all its descendants.

    CPU % is per core (200 = two cores busy) and measured since the previous
    sample of that process, never a lifetime average; a process first seen
    counts 0 until its next sample, and so do its IO rates (bytes that reached
    storage). ``open_files`` counts file descriptors, sockets and pipes
    included. A process we may not inspect counts what can be read.

    On Linux one pass over ``/proc/*/stat`` per tick serves every instance
    (parent links, CPU, threads, RSS); each process then costs one ``io`` read
    and one ``fd`` listing. Elsewhere cached :class:`psutil.Process` objects are
    read under ``oneshot()``.

    Parameters:
        clock: monotonic clock for rates (tests pass a fake).
        wall_clock: timestamps for samples.
        table_max_age: the process table is reused by every sample within this
            many seconds, so a tick that samples twenty instances reads ``/proc``
            once; a process started meanwhile shows up at the next refresh.
        procfs: read ``/proc`` directly (default: on Linux) rather than via psutil.

    Example::

        sampler = ProcessTreeSampler()
        sample = sampler.sample("inst-1", pid)  # every second; None once it is gone
        sampler.forget("inst-1")                # when the instance is removed
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        table_max_age: float = 0.5,
        procfs: bool | None = None,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._table_max_age = table_max_age
        self._procfs = _LINUX if procfs is None else procfs
        self._table: dict[int, _Row] = {}
        self._children: dict[int, list[int]] = {}
        self._table_at: float | None = None
        self._trees: dict[str, _Tree] = {}

    def forget(self, instance_id: str) -> None:
        """Drop what is cached for an instance (call when it is removed)."""
        self._trees.pop(instance_id, None)

    def sample(self, instance_id: str, pid: int) -> InstanceSample | None:
        """Sum the tree rooted at ``pid``; ``None`` when that process is gone or a zombie."""
        now = self._clock()
        table_at = self._refresh_table(now)
        main = self._table.get(pid)
        if main is None or main.zombie:
            self.forget(instance_id)
            return None
        tree = self._trees.get(instance_id)
        if tree is None or tree.main_pid != pid or tree.main_start != main.start:
            # First sight, or the instance restarted under a new (or recycled) pid.
            tree = self._trees[instance_id] = _Tree(main_pid=pid, main_start=main.start)

        live = self._tree_rows(pid)
        for gone in tree.procs.keys() - live.keys():
            del tree.procs[gone]
        cpu = read_bps = write_bps = 0.0
        rss = threads = fds = count = 0
        for child, row in live.items():
            tracked = tree.procs.get(child)
            if tracked is None or tracked.start != row.start:  # new, or a recycled pid
                tracked = self._track(child, row)
                if tracked is None:
                    continue
                tree.procs[child] = tracked
            if tracked.proc is not None:
                reading = _read_psutil(tracked.proc, now)
            else:
                reading = _read_linux(child, row, table_at)
            if reading is None:  # exited since the table was read
                del tree.procs[child]
                continue
            tracked.update(reading, now)
            count += 1
            cpu += tracked.cpu_rate
            read_bps += tracked.io_rate[0]
            write_bps += tracked.io_rate[1]
            rss += reading.rss
            threads += reading.threads
            fds += reading.fds
        if count == 0:
            return None
        return InstanceSample(
            ts=self._wall_clock(),
            instance_id=instance_id,
            cpu_percent=round(cpu, 2),
            rss_bytes=rss,
            read_bps=read_bps,
            write_bps=write_bps,
            threads=threads,
            open_files=fds,
            processes=count,
        )

    def _track(self, pid: int, row: _Row) -> _Tracked | None:
        if self._procfs:
            return _Tracked(start=row.start)
        try:
            return _Tracked(start=row.start, proc=psutil.Process(pid))
        except psutil.Error:
            return None

    def _refresh_table(self, now: float) -> float:
        """Re-read the process table unless it is fresh; return when it was read."""
        if self._table_at is not None and now - self._table_at < self._table_max_age:
            return self._table_at
        self._table = _linux_table() if self._procfs else _portable_table()
        self._table_at = now
        children: dict[int, list[int]] = {}
        for pid, row in self._table.items():
            if not row.zombie:
                children.setdefault(row.ppid, []).append(pid)
        self._children = children
        return now

    def _tree_rows(self, root: int) -> dict[int, _Row]:
        """The live processes of the tree under ``root``, root included."""
        found = {root: self._table[root]}
        stack = [root]
        while stack:
            for child in self._children.get(stack.pop(), ()):
                if child not in found:
                    found[child] = self._table[child]
                    stack.append(child)
        return found
