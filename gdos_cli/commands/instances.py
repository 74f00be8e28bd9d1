"""``gdos ps``, ``deploy``, ``start|stop|restart|destroy`` and ``logs``: running services."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from gdos_cli.core import (
    Env,
    ExitCode,
    GdosCommand,
    confirm,
    exit_code_for,
    option,
    output_option,
    pass_env,
)
from gdos_cli.output import Column, age, emit, short_id, size
from gdos_cli.resolve import Names
from gdos_sdk.errors import GdosError
from gdos_sdk.models import Instance
from gdos_sdk.states import InstanceState

__all__ = ["commands", "instance_columns"]


def _uptime(instance: Instance) -> str | None:
    if instance.state != InstanceState.RUNNING or not instance.started_at:
        return None
    return age(instance.started_at)


def instance_columns(names: Names) -> list[Column]:
    """The columns of an instance listing (names looked up once per command)."""
    return [
        Column("ID", lambda i: short_id(i.id)),
        Column("MODULE", lambda i: names.module_name(i.system_id, i.module_id), shrink=True),
        Column("NODE", lambda i: names.node_name(i.node_id), shrink=True),
        Column("PACKAGE", lambda i: f"{i.package} {i.version}", shrink=True),
        Column("STATE", lambda i: i.state),
        Column("HEALTH", lambda i: i.health),
        Column("RESTARTS", lambda i: i.restarts, align_right=True),
        Column("UPTIME", _uptime),
        Column("DESIRED", lambda i: i.desired_state, wide=True),
        Column("PID", lambda i: i.pid, wide=True, align_right=True),
        Column("CPU%", lambda i: i.metrics.cpu_percent if i.metrics else None, wide=True),
        Column("RSS", lambda i: size(i.metrics.rss_bytes) if i.metrics else None, wide=True),
        Column("INSTANCE ID", lambda i: i.id, wide=True),
        Column("REASON", lambda i: i.reason, wide=True, shrink=True),
    ]


@click.command(cls=GdosCommand)
@option("--system", metavar="SYSTEM", help="Only instances of this system (name or id).")
@option("--module", metavar="MODULE", help="Only instances of this module (SYSTEM/MODULE or id).")
@option("--node", metavar="NODE", help="Only instances on this node (hostname, alias or id).")
@option(
    "--state",
    type=click.Choice([s.value for s in InstanceState]),
    help="Only instances in this state.",
)
@output_option
@pass_env
def ps(
    env: Env,
    system: str | None,
    module: str | None,
    node: str | None,
    state: str | None,
    output: str,
) -> int:
    """List the instances (deployed modules) and their states."""
    names = Names(env.client())
    found = env.client().list_instances(
        system_id=names.system(system).id if system else None,
        module_id=names.module(module).id if module else None,
        node_id=names.node(node).id if node else None,
        state=state,
    )
    emit(found, instance_columns(names), output, empty="no instances")
    return ExitCode.OK


@click.command(cls=GdosCommand)
@click.argument("module")
@click.argument("nodes", nargs=-1, required=True, metavar="NODE...")
@option("--no-start", is_flag=True, help="Deploy only; leave the instance stopped.")
@output_option
@pass_env
def deploy(env: Env, module: str, nodes: tuple[str, ...], no_start: bool, output: str) -> int:
    """Deploy MODULE (SYSTEM/MODULE or id) onto each NODE (hostname, alias or id).

    Waits for the worker (up to the master's fleet.command_timeout) and shows each
    instance as the worker reported it.
    """
    client = env.client()
    names = Names(client)
    target = names.module(module)
    hosts = [names.node(n) for n in nodes]
    deployed: list[Instance] = []
    worst = ExitCode.OK
    for host in hosts:
        try:
            deployed.append(client.deploy(target.id, host.id, start=not no_start))
        except GdosError as exc:
            click.echo(
                f"gdos: error: {names.module_label(target)} on {host.hostname}: {exc.message}",
                err=True,
            )
            worst = max(worst, exit_code_for(exc))
    if deployed:
        emit(deployed, instance_columns(names), output)
    return worst


def _lifecycle(
    verb: str, past: str, act: Callable[[Env, str], Instance | None], *, ask_first: bool = False
) -> click.Command:
    def command(env: Env, instances: tuple[str, ...], output: str, yes: bool = False) -> int:
        names = Names(env.client())
        every = list(env.client().list_instances())
        chosen = [names.instance(ref, every) for ref in instances]
        if ask_first:
            listed = ", ".join(names.instance_label(i) for i in chosen)
            confirm(f"{verb.capitalize()} {listed} and remove their files?", yes)
        done: list[Instance] = []
        worst = ExitCode.OK
        for instance in chosen:
            label = names.instance_label(instance)
            try:
                result = act(env, instance.id)
            except GdosError as exc:
                click.echo(f"gdos: error: {label}: {exc.message}", err=True)
                worst = max(worst, exit_code_for(exc))
                continue
            if result is None:
                click.echo(f"{past} {label} ({short_id(instance.id)})", err=True)
            else:
                done.append(result)
        if done:
            emit(done, instance_columns(names), output)
        return worst

    decorated = output_option(pass_env(command))
    if ask_first:
        decorated = option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")(
            decorated
        )
    decorated = click.argument("instances", nargs=-1, required=True, metavar="INSTANCE...")(
        decorated
    )
    ask = " Asks first (--yes: do not ask; needed without a terminal)." if ask_first else ""
    return click.command(
        name=verb,
        cls=GdosCommand,
        short_help=f"{verb.capitalize()} instances"
        + (" and remove their files." if ask_first else "."),
        help=f"{verb.capitalize()} each INSTANCE: its id (or a unique prefix, as `gdos ps`"
        f" shows) or MODULE@NODE, e.g. shop/web@app-01.{ask}",
    )(decorated)


start = _lifecycle("start", "started", lambda env, i: env.client().start_instance(i))
stop = _lifecycle("stop", "stopped", lambda env, i: env.client().stop_instance(i))
restart = _lifecycle("restart", "restarted", lambda env, i: env.client().restart_instance(i))
destroy = _lifecycle(
    "destroy", "destroyed", lambda env, i: env.client().destroy_instance(i), ask_first=True
)


@click.command(cls=GdosCommand)
@click.argument("instance")
@option("-f", "--follow", is_flag=True, help="Keep printing new lines as they are written.")
@option("-n", "--lines", type=click.IntRange(0, 10000), default=100, help="Lines to show first.")
@option("--file", "file", metavar="NAME", default="console.log", help="Which log file.")
@pass_env
def logs(env: Env, instance: str, follow: bool, lines: int, file: str) -> int:
    """Print the last lines of an instance's log (INSTANCE as for `gdos start`)."""
    client = env.client()
    target = Names(client).instance(instance)
    if not follow:
        chunk = client.read_log(target.id, file, lines=lines)
        click.echo(chunk.text, nl=False)
        return ExitCode.OK
    try:
        for chunk in client.follow_log(target.id, file, lines=lines):
            click.echo(chunk.text, nl=False)
            sys.stdout.flush()
    except KeyboardInterrupt:  # the way to stop following
        return ExitCode.OK
    return ExitCode.OK  # pragma: no cover - following ends only by Ctrl-C or an error


commands: list[click.Command] = [ps, deploy, start, stop, restart, destroy, logs]
