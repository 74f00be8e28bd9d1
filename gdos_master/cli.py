"""``gdos-master``: load settings, build the app, serve it with Hypercorn until a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

import attrs
from hypercorn.asyncio import serve
from hypercorn.config import Config

from gdos_master import __version__
from gdos_master.app import Master, create_app
from gdos_master.wsdeflate import serve_uncompressed
from gdos_sdk import autostart
from gdos_sdk.codec import suggest
from gdos_sdk.config import (
    MasterSettings,
    load_master_settings,
    parse_listen,
    plain_http_warning,
)
from gdos_sdk.errors import GdosError
from gdos_sdk.flaghelp import HELP_FLAGS, VERSION_FLAGS, Flag, has_flag, render_help
from gdos_sdk.logformat import configure_logging
from gdos_sdk.parentwatch import parent_gone
from gdos_sdk.protocol import MAX_FRAME

__all__ = ["main"]

log = logging.getLogger("gdos.master")

# Named in the "did you mean" of an unknown flag, though taken out before the loader.
_HINTED = ("autostart", "help", "version")


def _url(listen: str, tls: bool) -> str:
    host, port = parse_listen(listen, default_host="0.0.0.0")
    shown = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{'https' if tls else 'http'}://{shown}:{port}"


async def _serve(app: object, config: Config, master: Master) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # The handler only sets an event; Hypercorn's graceful shutdown does the work.
        loop.add_signal_handler(sig, stop.set)

    parent = master.settings.server.parent_pid
    if parent:  # a throw-away master (LocalCluster): it ends with the process that started it

        async def orphaned() -> None:
            await parent_gone(parent)
            log.warning("process %d that started this master ended: shutting down", parent)
            stop.set()

        watcher = loop.create_task(orphaned())

    async def shutdown() -> None:
        await stop.wait()
        # End the web terminals first, while their browsers can still be told why: each
        # session's recording is stored and its end audited (master_restart).
        await master.terminals.close()

    try:
        await serve(app, config, shutdown_trigger=shutdown)  # type: ignore[arg-type]
    finally:
        if parent:
            watcher.cancel()


PROG = "gdos-master"
SUBCOMMANDS = ("migrate-storage",)
OWN_FLAGS = (
    Flag(
        "config", "FILE", "YAML settings file read instead of ./config.yaml; env OPS_MASTER_CONFIG"
    ),
    Flag(
        "autostart",
        "1|0",
        "1: install and enable a start-at-boot service running this command with the other"
        " flags (run as root; see docs/autostart.md); 0: remove it",
    ),
)


def help_text() -> str:
    """``gdos-master --help``: every flag and setting, from the settings definitions."""
    return render_help(
        MasterSettings,
        prog=PROG,
        summary="Run the GDOS master: the REST API, the workers' agent channel and the web"
        " console, on one port. The first start creates the admin user and prints its password"
        " once.",
        usage=[
            "[FLAGS]",
            "migrate-storage -to local|minio [-from local|minio] [FLAGS]   (see its --help)",
            "-autostart 1|0 [FLAGS]",
        ],
        env_prefix="OPS_MASTER_",
        default_file="config.yaml",
        flags=OWN_FLAGS,
        footer=f"{PROG} {__version__}. Docs: configuration.md, autostart.md and backups.md in"
        " the docs/ folder of the source.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the master. Flags as in ``gdos-master --help`` (``-port :8080`` ...)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "migrate-storage":
        from gdos_master.migrate import main as migrate_main

        return migrate_main(args[1:])
    if has_flag(args, HELP_FLAGS):
        print(help_text(), end="")
        return 0
    if has_flag(args, VERSION_FLAGS):
        print(f"{PROG} {__version__}")
        return 0
    if args and not args[0].startswith("-"):
        hint = suggest(args[0], SUBCOMMANDS)
        tip = f"did you mean '{hint}'?" if hint else f"commands: {', '.join(SUBCOMMANDS)}"
        print(f"{PROG}: unknown command {args[0]!r}; {tip} (see {PROG} --help)", file=sys.stderr)
        return 2
    switch, args = autostart.split_autostart_flag(args)
    if switch is not None:
        return autostart.command("master", switch, args, validate=load_master_settings)
    try:
        settings = load_master_settings(args, other_flags=_HINTED)
    except GdosError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    # Everything the master writes (database, packages, backups, recordings, temporary
    # files) is for this user only; the master starts no processes that could inherit this.
    os.umask(0o077)
    try:
        app = create_app(settings)
    except GdosError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 2
    host, port = parse_listen(settings.server.listen, default_host="0.0.0.0")
    warning = plain_http_warning(settings.server)
    if warning:
        # Loud on purpose: on stderr and in the log, framed so it is not lost in the noise.
        line = "!" * 78
        log.warning("%s", warning)
        print(f"{line}\nWARNING: {warning}\n{line}", file=sys.stderr, flush=True)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    # Hand Hypercorn our configured logger so its lines are not printed twice.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5
    config.websocket_ping_interval = None
    # Hypercorn's bound for every socket (it closes with 1009 and no reason past it); the
    # agent channel's own, lower limit answers with a reason (gdos_master.agent).
    config.websocket_max_message_size = 2 * MAX_FRAME
    serve_uncompressed()  # terminal sockets: no permessage-deflate (see gdos_master.wsdeflate)
    if settings.server.tls_cert:
        config.certfile = settings.server.tls_cert
        config.keyfile = settings.server.tls_key
    url = settings.server.public_url or _url(settings.server.listen, bool(settings.server.tls_cert))
    master: Master = app.extensions["gdos"]
    # Only the serving process manages the collector (an app built inside a test or a
    # notebook leaves the host's gc alone).
    master.heap.enabled = settings.fleet.gc_freeze
    print(f"GDOS master {__version__} listening on {url}", flush=True)
    print(f"data: {settings.server.data_dir}  database: {master.db.describe()}", flush=True)
    if master.initial_password:
        # Printed once, on the first start, to the console only (never logged).
        print(f"admin user: {settings.auth.admin_username}", flush=True)
        print(
            f"admin password: {master.initial_password}"
            "  (shown once; it must be changed at the first login)",
            flush=True,
        )
    if master.join_token.shown_once:
        # Likewise: the database keeps only its hash. Lost? Rotate it under Settings.
        print(
            f"join token: {master.join_token.shown_once}  (shown once; workers use it to join)",
            flush=True,
        )
        master.join_token = attrs.evolve(master.join_token, shown_once=None)
    try:
        asyncio.run(_serve(app, config, master))
    except OSError as exc:
        print(
            f"{PROG}: cannot listen on {settings.server.listen}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0
