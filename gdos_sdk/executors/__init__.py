"""Process executors: start, re-attach, watch and stop an instance's processes.

One :class:`Executor` protocol, one implementation per platform, and
:func:`default_executor` to pick it (trio's ``_subprocess_platform`` pattern).

Example::

    from gdos_sdk.executors import SpawnSpec, default_executor

    executor = default_executor()
    handle = executor.spawn(SpawnSpec(argv=argv, cwd=cwd, env=env, log_path=log, tag=iid))
    info = await handle.wait()
"""

from __future__ import annotations

import sys

from gdos_sdk.executors.base import (
    TAG_ENV,
    Executor,
    ExitInfo,
    OsOps,
    OsProcess,
    ProcessHandle,
    ProcessRef,
    SpawnSpec,
    StopResult,
    TreeScan,
)

__all__ = [
    "TAG_ENV",
    "Executor",
    "ExitInfo",
    "OsOps",
    "OsProcess",
    "ProcessHandle",
    "ProcessRef",
    "SpawnSpec",
    "StopResult",
    "TreeScan",
    "default_executor",
]


def default_executor() -> Executor:
    """The executor for this platform.

    :class:`~gdos_sdk.executors.posix.PosixExecutor` on POSIX,
    :class:`~gdos_sdk.executors.windows.WindowsExecutor` (a Job Object per
    instance) on Windows.

    Example::

        executor = default_executor()
    """
    # Imported here so importing the package never loads the other platform's code.
    if sys.platform == "win32":
        from gdos_sdk.executors.windows import WindowsExecutor

        return WindowsExecutor()
    else:
        from gdos_sdk.executors.posix import PosixExecutor

        return PosixExecutor()
