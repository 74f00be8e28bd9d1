"""``gdos rollout``: move a module's instances to another version, watch it, steer it.

``start`` and ``back`` follow the rollout live (the SDK's ``follow_rollout``) unless
``--detach``: one line per instance step as it changes, then the final state; the exit
code says how it ended (0 ``done``; 1 ``failed``, ``reverted`` or ``aborted``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from gdos_cli.core import Env, ExitCode, GdosGroup, option, output_option, pass_env
from gdos_cli.output import Column, age, emit, emit_one, short_id, text
from gdos_cli.resolve import MIN_PREFIX, Names, pick
from gdos_sdk.errors import NotFoundError
from gdos_sdk.rollouts import Rollout, RolloutItem, RolloutState, StepState

__all__ = ["commands"]

F = Callable[..., Any]


def _took(job: Rollout) -> str | None:
    if job.finished_at is None:
        return None
    return f"{job.finished_at - job.started_at:.1f}s"


def _moved(job: Rollout) -> str:
    done = sum(1 for i in job.items if i.state == StepState.DONE)
    return f"{done}/{len(job.items)}"


def rollout_columns(names: Names) -> list[Column]:
    """The columns of a rollout listing."""
    return [
        Column("ID", lambda r: short_id(r.id)),
        Column("MODULE", lambda r: f"{names.system_name(r.system_id)}/{r.module}", shrink=True),
        Column("KIND", lambda r: r.kind),
        Column("VERSION", lambda r: f"{r.from_version} -> {r.to_version}", shrink=True),
        Column("STATE", lambda r: r.state),
        Column("MOVED", _moved, align_right=True),
        Column("STARTED", lambda r: age(r.started_at)),
        Column("TOOK", _took, align_right=True),
        Column("USER", lambda r: r.user, shrink=True),
        Column("ROLLOUT ID", lambda r: r.id, wide=True),
        Column("PACKAGE", lambda r: r.package, wide=True),
        Column("UNCHANGED", lambda r: r.unchanged, wide=True, align_right=True),
        Column("PARALLEL", lambda r: r.strategy.max_parallel, wide=True, align_right=True),
        Column("WAIT", lambda r: r.strategy.wait, wide=True),
        Column("CANARY", lambda r: r.strategy.canary, wide=True, align_right=True),
        Column("REVERT", lambda r: r.strategy.auto_revert, wide=True),
        Column("ERROR", lambda r: r.error, wide=True, shrink=True),
    ]


def item_columns(names: Names) -> list[Column]:
    """The columns of a rollout's instances (``gdos rollout status``)."""
    return [
        Column("INSTANCE", lambda i: short_id(i.instance_id)),
        Column("NODE", lambda i: names.node_name(i.node_id), shrink=True),
        Column("FROM", lambda i: i.from_version),
        Column("CANARY", lambda i: i.canary),
        Column("STEP", lambda i: i.state),
        Column("ERROR", lambda i: i.error or i.note, shrink=True),
        Column("INSTANCE ID", lambda i: i.instance_id, wide=True),
        Column("STARTED", lambda i: _clock(i.started_at), wide=True),
        Column("FINISHED", lambda i: _clock(i.finished_at), wide=True),
    ]


def _clock(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, UTC).strftime("%H:%M:%S")


def _find(names: Names, ref: str) -> Rollout:
    """A rollout by its id or a unique id prefix (of the last 1000 the master keeps)."""
    try:
        return names.client.get_rollout(ref)
    except NotFoundError:
        if len(ref) < MIN_PREFIX:
            raise
    return pick(
        "rollout",
        ref,
        list(names.client.list_rollouts()),
        lambda r: (),
        lambda r: f"{short_id(r.id)} ({r.module} {r.to_version})",
        ident=lambda r: r.id,
    )


def _ended(job: Rollout) -> int:
    """The exit code of a rollout that ended: 0 for ``done``, else 1."""
    return ExitCode.OK if job.state == RolloutState.DONE else ExitCode.FAILED


def _step(item: RolloutItem, names: Names) -> str:
    node = names.node_name(item.node_id)
    canary = " (canary)" if item.canary else ""
    why = f": {item.error}" if item.error else (f" ({item.note})" if item.note else "")
    return f"  {short_id(item.instance_id)} on {node}{canary}: {text(item.state)}{why}"


def _show(job: Rollout, names: Names, output: str) -> None:
    """A rollout in full: its row, its instances, why it failed."""
    emit_one(job, rollout_columns(names), output)
    if output in ("json", "yaml"):
        return
    click.echo()
    emit(job.items, item_columns(names), output)
    if job.error:
        click.echo(f"error: {job.error}")


def _follow(env: Env, job: Rollout, names: Names, output: str) -> int:
    """Print each change of the rollout until it ends; the exit code of its end."""
    live = output in ("table", "wide")
    label = f"{names.system_name(job.system_id)}/{job.module}"
    if live:
        click.echo(
            f"{job.kind} {short_id(job.id)}: {label} {job.package}"
            f" {job.from_version} -> {job.to_version}, {len(job.items)} instance(s)"
            f" ({job.unchanged} already there)"
        )
    steps: dict[str, tuple[str, str, str]] = {}
    state = str(RolloutState.RUNNING)  # as it starts: the header says so
    last = job
    try:
        for last in env.client().follow_rollout(job.id):
            if not live:
                continue
            if str(last.state) != state:
                state = str(last.state)
                if not last.state.ended:
                    click.echo(f"{job.kind} {short_id(job.id)}: {state}")
            for item in last.items:
                seen = (str(item.state), item.error, item.note)
                if steps.get(item.instance_id) != seen:
                    steps[item.instance_id] = seen
                    click.echo(_step(item, names))
    except KeyboardInterrupt:
        click.echo(
            f"\nstopped following; the {job.kind} goes on: gdos rollout status {short_id(job.id)}",
            err=True,
        )
        raise click.exceptions.Abort() from None
    if live:
        took = _took(last)
        click.echo(
            f"{job.kind} {short_id(job.id)}: {text(last.state)}" + (f" in {took}" if took else "")
        )
        click.echo()
    _show(last, names, output)
    return _ended(last)


def _strategy_options(func: F) -> F:
    """The strategy options of ``start`` and ``back`` (docs/rollouts.md, "The strategy")."""
    decorators = [
        option(
            "--max-parallel",
            type=click.IntRange(1, 1000),
            default=1,
            help="Instances being moved at once.",
        ),
        option(
            "--wait",
            type=click.Choice(["running", "stable", "healthy"]),
            default="stable",
            help="When a moved instance counts as done: its worker reports it running;"
            " the same process keeps running for --min-healthy-time; its health check"
            " passes and holds that long.",
        ),
        option(
            "--min-healthy-time",
            type=click.FloatRange(0, 3600),
            default=10.0,
            metavar="S",
            help="Seconds for --wait stable and healthy.",
        ),
        option(
            "--healthy-deadline",
            type=click.FloatRange(0, 86400, min_open=True),
            default=300.0,
            metavar="S",
            help="Seconds one instance may take from its stop to passing --wait.",
        ),
        option(
            "--progress-deadline",
            type=click.FloatRange(0, 7 * 86400, min_open=True),
            default=600.0,
            metavar="S",
            help="Seconds the rollout may go without an instance finishing.",
        ),
        option(
            "--canary",
            type=click.IntRange(0, 1000),
            default=0,
            help="Move this many instances first, then wait for `gdos rollout promote`.",
        ),
        option(
            "--auto-promote-after",
            type=click.FloatRange(0, 7 * 86400),
            metavar="S",
            help="Seconds after the canaries made it to promote without a user.",
        ),
        option(
            "--no-auto-revert",
            is_flag=True,
            help="On a failure, leave what moved on the new version (by default every"
            " instance moved goes back to the version it had).",
        ),
        option(
            "--detach",
            is_flag=True,
            help="Print the rollout as it starts and return; do not follow it.",
        ),
        output_option,
    ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


def _begin(
    env: Env,
    names: Names,
    start: Callable[..., Rollout],
    detach: bool,
    output: str,
    strategy: dict[str, Any],
) -> int:
    no_auto_revert = strategy.pop("no_auto_revert")
    job = start(auto_revert=not no_auto_revert, **strategy)
    if detach:
        emit_one(job, rollout_columns(names), output)
        if output in ("table", "wide"):
            click.echo(f"follow it: gdos rollout status -f {short_id(job.id)}", err=True)
        return ExitCode.OK
    return _follow(env, job, names, output)


@click.group(cls=GdosGroup)
def rollout() -> int:
    """Move a module's instances to another version, a few at a time (docs/rollouts.md).

    `start` and `back` follow the rollout until it ends (unless --detach) and exit 0 when
    it is done, 1 when it failed, was reverted or aborted.
    """
    return ExitCode.OK


@rollout.command()
@click.argument("module")
@click.argument("version")
@_strategy_options
@pass_env
def start(
    env: Env, /, module: str, version: str, detach: bool, output: str, **strategy: Any
) -> int:
    """Move every instance of MODULE (SYSTEM/MODULE or id) to VERSION of its package.

    Follows it live: one line per instance step (waiting, preparing, stopping, starting,
    verifying, done or failed), then the final state.
    """
    names = Names(env.client())
    target = names.module(module)
    return _begin(
        env,
        names,
        lambda **kw: env.client().rollout(target.id, version, **kw),
        detach,
        output,
        strategy,
    )


@rollout.command()
@click.argument("module")
@click.argument("version", required=False, default="")
@_strategy_options
@pass_env
def back(env: Env, /, module: str, version: str, detach: bool, output: str, **strategy: Any) -> int:
    """Roll MODULE back to the version before (or to VERSION, a stored one): a rollback.

    "Before" is where the rollout that brought its current version started. Follows it
    as `gdos rollout start` does.
    """
    names = Names(env.client())
    target = names.module(module)
    return _begin(
        env,
        names,
        lambda **kw: env.client().rollback(target.id, version, **kw),
        detach,
        output,
        strategy,
    )


@rollout.command(name="list")
@click.argument("module", required=False)
@output_option
@pass_env
def list_rollouts(env: Env, module: str | None, output: str) -> int:
    """List the rollouts, newest first: of MODULE (SYSTEM/MODULE or id), or of all."""
    names = Names(env.client())
    module_id = names.module(module).id if module else None
    found = env.client().list_rollouts(module_id=module_id)
    emit(found, rollout_columns(names), output, empty="no rollouts")
    return ExitCode.OK


@rollout.command()
@click.argument("rollout_id", metavar="ID")
@option("-f", "--follow", is_flag=True, help="Follow it until it ends (exit 1 if not done).")
@output_option
@pass_env
def status(env: Env, rollout_id: str, follow: bool, output: str) -> int:
    """Show a rollout (ID or a unique prefix, as `gdos rollout list` shows) and its instances."""
    names = Names(env.client())
    job = _find(names, rollout_id)
    if follow:
        return _follow(env, job, names, output)
    _show(job, names, output)
    return ExitCode.OK


def _steer(verb: str, act: Callable[[Env, str], Rollout], summary: str) -> click.Command:
    @output_option
    @pass_env
    def command(env: Env, rollout_id: str, output: str) -> int:
        names = Names(env.client())
        job = _find(names, rollout_id)
        emit_one(act(env, job.id), rollout_columns(names), output)
        return ExitCode.OK

    decorated = click.argument("rollout_id", metavar="ID")(command)
    return rollout.command(name=verb, help=f"{summary} (ID or a unique prefix).")(decorated)


_steer("promote", lambda env, i: env.client().promote(i), "Let a rollout go on past its canaries")
_steer(
    "pause",
    lambda env, i: env.client().pause(i),
    "Pause a rollout: no further instance begins; those under way finish",
)
_steer("resume", lambda env, i: env.client().resume(i), "Resume a paused rollout")


@rollout.command()
@click.argument("rollout_id", metavar="ID")
@option(
    "--revert/--no-revert",
    default=None,
    show_default="the rollout's auto-revert setting",
    help="Move every instance it moved back to the version it had (or keep them).",
)
@output_option
@pass_env
def abort(env: Env, rollout_id: str, revert: bool | None, output: str) -> int:
    """Stop a rollout (ID or a unique prefix): no further instance begins.

    It ends `aborted`, or `reverted` when it reverts.
    """
    names = Names(env.client())
    job = _find(names, rollout_id)
    emit_one(env.client().abort(job.id, revert=revert), rollout_columns(names), output)
    return ExitCode.OK


commands: list[click.Command] = [rollout]
