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

import os

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
    """The executor for this platform: :class:`~gdos_sdk.executors.posix.PosixExecutor` on POSIX.

    Raises:
        NotImplementedError: on Windows, until the Job Object executor lands.

    Example::

        executor = default_executor()
    """
    if os.name == "posix":
        # Imported here so importing the package never pulls in POSIX-only code elsewhere.
        from gdos_sdk.executors.posix import PosixExecutor

        return PosixExecutor()
    raise NotImplementedError(
        f"no process executor for os.name={os.name!r}: the Windows executor (one Job Object "
        "per instance) is a separate follow-up issue and is not implemented yet"
    )
