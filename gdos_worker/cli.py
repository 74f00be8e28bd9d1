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
from gdos_sdk.config import load_worker_settings, parse_listen
from gdos_sdk.errors import GdosError
from gdos_worker import __version__
from gdos_worker.app import Worker, create_app

__all__ = ["main"]


async def _serve(app: object, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker. Flags as in docs/configuration.md (``-master URL -work_dir DIR`` ...)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in {"-h", "--help", "-help"}:
        print(
            "usage: gdos-worker [-master URL] [-port 8081] [-work_dir DIR] [-join_token T]"
            " [-config FILE] [-autostart 1|0]\nsee docs/configuration.md, docs/autostart.md"
        )
        return 0
    if args and args[0] in {"-version", "--version"}:
        print(__version__)
        return 0
    switch, args = autostart.split_autostart_flag(args)
    if switch is not None:
        return autostart.command("worker", switch, args, validate=load_worker_settings)
    try:
        settings = load_worker_settings(args)
        logging.basicConfig(
            level=settings.log.level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        worker = Worker(settings)
    except GdosError as exc:
        print(f"gdos-worker: {exc.message}", file=sys.stderr)
        return 2
    host, port = parse_listen(settings.server.listen, default_host="0.0.0.0")
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    # Hand Hypercorn our configured logger so its lines are not printed twice.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2
    print(
        f"GDOS worker {__version__}: node {worker.agent.identity.node_id},"
        f" master {settings.connect.master_url}, work dir {worker.workdir.root},"
        f" status port {port}",
        flush=True,
    )
    try:
        asyncio.run(_serve(create_app(worker), config))
    except OSError as exc:
        print(
            f"gdos-worker: cannot listen on {settings.server.listen}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0
