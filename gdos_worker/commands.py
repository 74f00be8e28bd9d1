"""The worker's side of fleet commands: run one, stream its output to the master.

The command runs in the worker's work directory with the worker's environment
minus its own configuration variables (``OPS_WORKER_*`` holds the join token),
in its own session; see :func:`gdos_sdk.commands.run_command`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from gdos_sdk.commands import CommandExit, run_command
from gdos_sdk.errors import SpawnError
from gdos_sdk.executors import Executor
from gdos_sdk.protocol import CommandOutput, RunCommand

__all__ = ["run_fleet_command"]

log = logging.getLogger("gdos.worker.commands")

_PRIVATE_ENV_PREFIXES = ("OPS_WORKER_", "OPS_MASTER_")


async def run_fleet_command(
    command: RunCommand,
    *,
    cwd: Path,
    executor: Executor,
    emit: Callable[[CommandOutput], None],
) -> CommandExit:
    """Run ``command``; hand every piece of output to ``emit`` as it arrives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV_PREFIXES)}

    def on_output(stream: str, text: str) -> None:
        emit(CommandOutput(run_id=command.run_id, stream=stream, data=text))  # type: ignore[arg-type]

    log.info("running fleet command %s (timeout %g s)", command.run_id, command.timeout)
    try:
        result = await run_command(
            command.command,
            timeout=command.timeout,
            tag=f"cmd-{command.run_id}",
            on_output=on_output,
            cwd=str(cwd),
            env=env,
            executor=executor,
        )
    except OSError as exc:
        raise SpawnError(f"cannot start the shell: {exc.strerror or exc}") from exc
    if result.timed_out:
        log.warning(
            "fleet command %s timed out after %g s; killed %s",
            command.run_id,
            command.timeout,
            result.killed_pids,
        )
    return result
