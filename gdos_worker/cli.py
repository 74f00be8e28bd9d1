"""``gdos-worker``: load settings, run the worker and its status port until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from hypercorn.asyncio import serve
from hypercorn.config import Config

from gdos_sdk import autostart
from gdos_sdk.config import WorkerSettings, load_worker_settings, parse_listen
from gdos_sdk.errors import GdosError
from gdos_sdk.flaghelp import HELP_FLAGS, VERSION_FLAGS, Flag, has_flag, render_help
from gdos_sdk.logformat import configure_logging, log_context
from gdos_sdk.parentwatch import parent_gone
from gdos_worker import __version__
from gdos_worker.app import Worker, create_app
from gdos_worker.masters import shown_url

__all__ = ["main"]

log = logging.getLogger("gdos.worker")


async def _serve(app: object, config: Config, worker: Worker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parent = worker.settings.server.parent_pid
    if parent:  # a throw-away worker (LocalCluster): it and its instances end with the parent

        async def orphaned() -> None:
            await parent_gone(parent)
            log.warning("process %d that started this worker ended: stopping instances", parent)
            await worker.supervisor.stop_all()
            stop.set()

        watcher = loop.create_task(orphaned())
    try:
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    finally:
        if parent:
            watcher.cancel()


PROG = "gdos-worker"
OWN_FLAGS = (
    Flag("config", "FILE", "YAML file to read instead of ./worker.yaml; env OPS_WORKER_CONFIG"),
    Flag(
        "autostart",
        "1|0",
        "1: install and enable a start-at-boot service running this command with the other"
        " flags (run as root; see docs/autostart.md); 0: remove it",
    ),
)
# Named in the "did you mean" of an unknown flag, though taken out before the loader.
_HINTED = ("autostart", "help", "version")


def help_text() -> str:
    """``gdos-worker --help``: every flag and setting, from the settings definitions."""
    return render_help(
        WorkerSettings,
        prog=PROG,
        summary="Run a GDOS worker: it dials the master, runs this machine's instances, keeps"
        " them in their desired state and reports every second. Instances keep running when"
        " the worker stops.",
        usage=["[FLAGS]", "-autostart 1|0 [FLAGS]"],
        env_prefix="OPS_WORKER_",
        default_file="worker.yaml",
        flags=OWN_FLAGS,
        footer=f"{PROG} {__version__}. Docs: configuration.md and autostart.md in the docs/"
        " folder of the source.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker. Flags as in ``gdos-worker --help`` (``-master URL -work_dir DIR`` ...)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if has_flag(args, HELP_FLAGS):
        print(help_text(), end="")
        return 0
    if has_flag(args, VERSION_FLAGS):
        print(f"{PROG} {__version__}")
        return 0
    switch, args = autostart.split_autostart_flag(args)
    if switch is not None:
        return autostart.command("worker", switch, args, validate=load_worker_settings)
    try:
        settings = load_worker_settings(args, other_flags=_HINTED)
        configure_logging(settings.log.level, settings.log.format)
        worker = Worker(settings)
    except GdosError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 2
    host, port = parse_listen(settings.server.listen, default_host="0.0.0.0")
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    # Hand Hypercorn our configured logger so its lines are not printed twice.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2
    masters = ", ".join(shown_url(url) for url in worker.agent.masters.urls)
    print(
        f"GDOS worker {__version__}: node {worker.agent.identity.node_id},"
        f" master {masters}, work dir {worker.workdir.root},"
        f" status port {port}",
        flush=True,
    )
    try:
        # Every line this worker logs names its node.
        with log_context(node_id=worker.agent.identity.node_id):
            asyncio.run(_serve(create_app(worker), config, worker))
    except OSError as exc:
        print(
            f"{PROG}: cannot listen on {settings.server.listen}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0
