"""Profile a running process with py-spy and summarise where its busy time went.

``py-spy record -f raw`` writes one line per distinct stack (``frame;frame;... count``).
Recording with ``--nonblocking`` (the master is not paused to be sampled) keeps the samples
where the event loop waits in ``select``; :func:`summarise` counts those as idle and gives
every other share as a share of the busy samples (for the master: of its event loop's
work). A frame counts once per stack (inclusive time), by ``name (file)``; the frames that
wrap everything (the event loop, ``main``) are left out of :meth:`Profile.top`.

Example::

    with Profile(master_pid, Path("master.raw")) as profile:
        ...  # the load
    for name, share in profile.top(15):
        print(f"{share:5.1%} {name}")
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

__all__ = ["Profile", "available", "summarise"]

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def available() -> bool:
    """Whether py-spy is installed (``pip install py-spy``)."""
    return _py_spy() is not None


def _function(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "/gdos_", "/lib/python3"):
        at = file.find(marker)
        if at >= 0:
            file = file[at + len(marker) :] if marker != "/gdos_" else "gdos_" + file[at + 6 :]
            break
    return f"{match['name']} ({file})"


_IDLE = ("EpollSelector.select (selectors.py)", "select (selectors.py)")


def summarise(raw: Path) -> tuple[int, int, dict[str, float], dict[str, float]]:
    """(busy samples, idle samples, inclusive and own share of busy time by function)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if frames and frames[-1] in _IDLE:
            idle += count
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return 0, idle, {}, {}
    return (
        total,
        idle,
        {k: v / total for k, v in inclusive.most_common()},
        {k: v / total for k, v in own.most_common()},
    )


class Profile:
    """``py-spy record`` of ``pid`` while the block runs (nothing when py-spy is missing)."""

    def __init__(self, pid: int, out: Path, *, rate: int = 50) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profile:
        spy = _py_spy()
        if spy is None:  # said, not silently skipped: an empty profile reads as no work
            print(f"py-spy is not installed (pip install py-spy): no profile in {self.out}")
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                str(self.rate),
                "--nonblocking",  # do not pause the master to sample it
                "--format",
                "raw",
                "--output",
                str(self.out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def top(self, count: int = 20) -> list[tuple[str, float]]:
        """The ``count`` functions with the largest inclusive share of busy time."""
        if not self.out.exists():
            return []
        _, _, inclusive, _ = summarise(self.out)
        return [(k, v) for k, v in inclusive.items() if v < 0.97][:count]

    def busy(self) -> float:
        """Share of the samples in which the process was not waiting in ``select``."""
        if not self.out.exists():
            return 0.0
        busy, idle, _, _ = summarise(self.out)
        return busy / (busy + idle) if busy + idle else 0.0
