"""``gdos run NODES... -- CMD``: one shell command on many nodes, output per node.

Each node's output is printed as soon as that node has finished (``--stream``: line by
line as it arrives, each line prefixed with the node's name: its alias, else hostname).
The exit status is the worst node's: the largest exit code, 124 for a node whose command
timed out, 255 for one where it could not run (offline, no shell) or was killed by a
signal.
"""

from __future__ import annotations

import click

from gdos_cli.core import CliError, Env, ExitCode, GdosCommand, option, output_option, pass_env
from gdos_cli.output import Column, emit_one
from gdos_cli.resolve import Names
from gdos_sdk.commands import MAX_TIMEOUT, CommandRun, NodeCommandResult, NodeRunState
from gdos_sdk.models import Node

__all__ = ["commands", "node_status"]

TIMED_OUT = 124  # as timeout(1) says it
COULD_NOT_RUN = 255  # as ssh(1) says it
POLL_SECONDS = 1  # the long poll's wait: how late a finished node may be shown


def node_status(result: NodeCommandResult) -> int:
    """One node's exit status (see the module docstring)."""
    if result.state == NodeRunState.FAILED:
        return COULD_NOT_RUN
    if result.timed_out:
        return TIMED_OUT
    if result.exit_code is None:
        return COULD_NOT_RUN
    return result.exit_code


def _describe(result: NodeCommandResult) -> str:
    if result.state == NodeRunState.FAILED:
        return f"failed: {result.error or 'could not run'}"
    if result.timed_out:
        return f"timed out after {result.duration:.1f} s"
    if result.exit_code is None:
        return "killed"
    return f"exit {result.exit_code}, {result.duration:.1f} s"


class _Printer:
    """Prints each node's output once: whole when it finished, or line by line."""

    def __init__(self, labels: dict[str, str], stream: bool) -> None:
        self.labels = labels
        self.stream = stream
        self.width = max(len(h) for h in labels.values()) if labels else 0
        self.shown: set[str] = set()
        self.offsets: dict[tuple[str, str], int] = {}

    def _lines(self, node_id: str, kind: str, text: str, final: bool) -> None:
        start = self.offsets.get((node_id, kind), 0)
        end = len(text) if final else text.rfind("\n", start) + 1
        if end <= start:
            return
        self.offsets[(node_id, kind)] = end
        name = self.labels.get(node_id, node_id[:8]).ljust(self.width)
        for line in text[start:end].splitlines():
            click.echo(f"{name} | {line}", err=kind == "stderr")

    def update(self, run: CommandRun) -> None:
        for result in run.nodes:
            node_id = result.node_id
            finished = result.state != NodeRunState.RUNNING
            if self.stream:
                self._lines(node_id, "stdout", result.stdout, finished)
                self._lines(node_id, "stderr", result.stderr, finished)
            if not finished or node_id in self.shown:
                continue
            self.shown.add(node_id)
            name = self.labels.get(node_id, node_id[:8])
            if self.stream:
                click.echo(f"{name.ljust(self.width)} | [{_describe(result)}]", err=True)
                continue
            click.echo(f"=== {name} ({_describe(result)})")
            if result.stdout:
                click.echo(result.stdout, nl=not result.stdout.endswith("\n"))
            if result.stderr:
                click.echo(result.stderr, nl=not result.stderr.endswith("\n"), err=True)
            if result.truncated:
                click.echo(f"[{name}: output truncated by the master]", err=True)


RUN_COLUMNS = [Column("ID", lambda r: r.id), Column("COMMAND", lambda r: r.command, shrink=True)]
COMMAND_KEY = "gdos.run.command"


class RunCommand(GdosCommand):
    """Keeps what follows ``--`` apart: it is the remote command, options and all."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta[COMMAND_KEY] = args[at + 1 :]
            args = args[:at]
        return super().parse_args(ctx, args)


@click.command(cls=RunCommand)
@click.argument("nodes", nargs=-1, metavar="NODE... -- COMMAND...")
@option("--all", "all_nodes", is_flag=True, help="Every online node (no NODE needed).")
@option(
    "-l",
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Nodes that have this label (repeat to ask for several; all must match).",
)
@option(
    "--timeout",
    type=click.FloatRange(0, MAX_TIMEOUT, min_open=True),
    default=60.0,
    help="Seconds before the command is killed on a node.",
)
@option("-s", "--stream", is_flag=True, help="Print lines as they arrive, prefixed by node.")
@output_option
@pass_env
def run(
    env: Env,
    nodes: tuple[str, ...],
    all_nodes: bool,
    labels: tuple[str, ...],
    timeout: float,
    stream: bool,
    output: str,
) -> int:
    """Run COMMAND on each NODE (hostname, alias or id) and print each node's output.

    Put `--` before the command: `gdos run web-01 web-02 -- df -h /`. The exit status is
    the worst node's (124: timed out; 255: could not run). With -o json or yaml the whole
    run is printed at the end instead.
    """
    words: list[str] = click.get_current_context().meta.get(COMMAND_KEY, [])
    if not words:
        raise CliError(
            "no command: write it after --, e.g. gdos run web-01 -- uptime", ExitCode.USAGE
        )
    command = " ".join(words)
    names = Names(env.client())
    chosen = _select(names, list(nodes), all_nodes, labels)
    client = env.client()
    started = client.start_command([n.id for n in chosen], command, timeout=timeout)
    printer = _Printer({n.id: n.alias or n.hostname for n in chosen}, stream)
    current = started
    while True:
        if output in ("table", "wide"):
            printer.update(current)
        if current.done:
            break
        current = client.get_command(started.id, wait=POLL_SECONDS)
    if output in ("json", "yaml"):
        emit_one(current, RUN_COLUMNS, output)
    return max((node_status(r) for r in current.nodes), default=ExitCode.OK)


def _select(names: Names, refs: list[str], all_nodes: bool, labels: tuple[str, ...]) -> list[Node]:
    wanted: dict[str, str] = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--label {item!r} is not KEY=VALUE", ExitCode.USAGE)
        wanted[key] = value
    chosen = {n.id: n for n in (names.node(ref) for ref in refs)}
    if all_nodes or wanted:
        for node in names.nodes():
            if all_nodes and node.status.value != "online":
                continue
            if all(node.labels.get(k) == v for k, v in wanted.items()):
                chosen.setdefault(node.id, node)
    if not chosen:
        raise CliError("no nodes: name some, or use --all or --label", ExitCode.USAGE)
    return list(chosen.values())


commands: list[click.Command] = [run]
