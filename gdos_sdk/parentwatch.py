"""Noticing that the process that started us is gone (throw-away clusters only).

A server started with ``-parent_pid PID`` (``server.parent_pid``) ends when process
``PID`` ends, however it ends: ``close()``, interpreter exit, or SIGKILL of a Jupyter
kernel. :class:`~gdos_sdk.LocalCluster` starts its master and workers so; a worker then
stops its instances before it exits (normally a worker that stops leaves them running).

Two ways to notice, so neither is relied on alone:

* Linux: ``prctl(PR_SET_PDEATHSIG)`` asks the kernel for :data:`PARENT_SIGNAL` when the
  parent ends. The kernel sends it when the parent *thread* that started us ends, too,
  so the signal only wakes the check below; it decides nothing by itself.
* everywhere: a check every ``interval`` seconds: the parent no longer exists, is a
  zombie, or is another process (its start time changed), or we were re-parented.

A start time read as wall-clock time moves when the clock is stepped (NTP, a virtual
machine resumed): Linux derives it from the boot time, which it reports as "now minus
uptime". On Linux the start time is therefore the kernel's own count of clock ticks since
boot (``/proc/<pid>/stat``), which no clock step moves; a master once shut itself down
under a live test run because a step made its parent look like another process.

Example::

    await parent_gone(parent_pid)   # returns once the parent has ended
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys

import psutil

from gdos_sdk.executors.base import start_ticks

__all__ = ["PARENT_SIGNAL", "ParentWatch", "parent_gone", "started"]

#: what the Linux kernel sends us when the parent ends (only wakes the check)
if sys.platform == "win32":
    PARENT_SIGNAL = signal.SIGTERM  # never asked for: Windows has no such signal
else:
    PARENT_SIGNAL = signal.SIGUSR2
_PR_SET_PDEATHSIG = 1


class ParentWatch:
    """Whether one process, our parent, still runs (pure checks over psutil)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.direct = sys.platform != "win32" and os.getppid() == pid
        self.created = started(pid)

    def alive(self) -> bool:
        """False once the parent has ended (gone, a zombie, or its pid taken by another)."""
        if self.created is None:
            return False
        if self.direct and os.getppid() != self.pid:
            return False  # re-parented: the parent ended, even if nobody reaped it yet
        if started(self.pid) != self.created:
            return False  # gone, or its pid now belongs to another process
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def started(pid: int) -> float | None:
    """When process ``pid`` started, in a measure no wall-clock step moves where one exists
    (Linux: clock ticks since boot); None when there is no such process."""
    if sys.platform == "linux":
        ticks = start_ticks(pid)
        return None if ticks is None else float(ticks)
    else:
        try:
            return psutil.Process(pid).create_time()
        except psutil.Error:
            return None


def _ask_kernel(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)`` on Linux; False where it is not available."""
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            return bool(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
        except (OSError, AttributeError):
            return False
    else:
        return False


async def parent_gone(pid: int, *, interval: float = 1.0) -> None:
    """Return once process ``pid`` has ended (see the module docstring for how).

    Raises:
        Nothing: a parent that is gone already returns at once.
    """
    watch = ParentWatch(pid)
    woken = asyncio.Event()
    loop = asyncio.get_running_loop()
    armed = False
    if sys.platform == "linux":
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(PARENT_SIGNAL, woken.set)
            armed = _ask_kernel(PARENT_SIGNAL)
    try:
        while watch.alive():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), interval)
            woken.clear()
    finally:
        if armed:  # disarmed first: a late signal must not meet the default action (exit)
            _ask_kernel(0)
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(PARENT_SIGNAL)
