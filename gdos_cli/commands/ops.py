"""``gdos alerts``, ``audit`` and ``backup``: what fired, who did what, and the backups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gdos_cli.core import Env, ExitCode, GdosGroup, confirm, option, output_option, pass_env
from gdos_cli.output import Column, age, emit, emit_one, short_id, size

__all__ = ["commands"]

# --- alerts -----------------------------------------------------------------------------

ACTIVE_COLUMNS = [
    Column("RULE", lambda a: a.rule_name, shrink=True),
    Column("TARGET", lambda a: a.target_name or a.target, shrink=True),
    Column("SEVERITY", lambda a: a.severity),
    Column("STATE", lambda a: a.state),
    Column("VALUE", lambda a: a.value, align_right=True),
    Column("SINCE", lambda a: age(a.since)),
    Column("SILENCED", lambda a: a.silenced),
    Column("TARGET ID", lambda a: a.target, wide=True),
    Column("LABELS", lambda a: a.labels, wide=True, shrink=True),
]

EVENT_COLUMNS = [
    Column("ID", lambda e: e.id, align_right=True),
    Column("RULE", lambda e: e.rule_name, shrink=True),
    Column("TARGET", lambda e: e.target_name or e.target, shrink=True),
    Column("SEVERITY", lambda e: e.severity),
    Column("STATE", lambda e: e.state),
    Column("STARTED", lambda e: e.started_at),
    Column("ENDED", lambda e: e.ended_at),
    Column("END", lambda e: e.end_reason, wide=True),
    Column("VALUE", lambda e: e.value, wide=True, align_right=True),
    Column("SILENCED", lambda e: e.silenced, wide=True),
]

RULE_COLUMNS = [
    Column("NAME", lambda r: r.name, shrink=True),
    Column("CONDITION", lambda r: f"{r.metric} {r.op} {r.threshold:g}", shrink=True),
    Column("FOR", lambda r: f"{r.for_seconds:g}s"),
    Column("TARGETS", lambda r: r.target.kind),
    Column("SEVERITY", lambda r: r.severity),
    Column("ENABLED", lambda r: r.enabled),
    Column("ID", lambda r: short_id(r.id)),
    Column("RULE ID", lambda r: r.id, wide=True),
    Column("DESCRIPTION", lambda r: r.description, wide=True, shrink=True),
]


@click.group(cls=GdosGroup, invoke_without_command=True)
@output_option
@click.pass_context
def alerts(ctx: click.Context, output: str) -> int:
    """List the alerts pending or firing now (subcommands: history, rules)."""
    if ctx.invoked_subcommand is not None:
        return ExitCode.OK
    return _active(output)


@pass_env
def _active(env: Env, output: str) -> int:
    emit(env.client().active_alerts(), ACTIVE_COLUMNS, output, empty="no active alerts")
    return ExitCode.OK


@alerts.command()
@option("--state", type=click.Choice(["firing", "resolved"]), help="Only events in this state.")
@option(
    "--severity",
    type=click.Choice(["info", "warning", "critical"]),
    help="Only events of this severity.",
)
@option("--since", metavar="TIME", help="Started at or after (ISO 8601 or Unix seconds).")
@option("--limit", type=click.IntRange(1, 1000), default=50, help="How many, newest first.")
@output_option
@pass_env
def history(
    env: Env,
    state: Any,
    severity: Any,
    since: str | None,
    limit: int,
    output: str,
) -> int:
    """List past and present alert events, newest first."""
    page = env.client().alert_history(state=state, severity=severity, since=since, limit=limit)
    emit(page.items, EVENT_COLUMNS, output, empty="no alert events", data=page)
    return ExitCode.OK


@alerts.command()
@output_option
@pass_env
def rules(env: Env, output: str) -> int:
    """List the alert rules."""
    emit(env.client().list_alert_rules(), RULE_COLUMNS, output, empty="no alert rules")
    return ExitCode.OK


# --- audit ------------------------------------------------------------------------------

AUDIT_COLUMNS = [
    Column("TIME", lambda e: e.ts),
    Column("ACTOR", lambda e: e.actor, shrink=True),
    Column("ACTION", lambda e: e.action),
    Column("TARGET", lambda e: e.target, shrink=True),
    Column("RESULT", lambda e: e.result),
    Column("STATUS", lambda e: e.status, align_right=True),
    Column("MESSAGE", lambda e: e.message, shrink=True),
    Column("IP", lambda e: e.ip, wide=True),
    Column("PARAMS", lambda e: e.params, wide=True, shrink=True),
]


@click.command()
@option("--actor", metavar="NAME", help="Only entries by this actor (exact).")
@option("--action", metavar="PREFIX", help="Only actions starting so (instance., auth.login).")
@option("--target", metavar="PREFIX", help="Only targets starting so (node:, system:).")
@option("--since", metavar="TIME", help="At or after (ISO 8601 or Unix seconds).")
@option("--until", metavar="TIME", help="Before (ISO 8601 or Unix seconds).")
@option("--limit", type=click.IntRange(1, 1000), default=50, help="How many, newest first.")
@option("--offset", type=click.IntRange(0), default=0, help="Skip this many (paging).")
@output_option
@pass_env
def audit(
    env: Env,
    actor: str | None,
    action: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    offset: int,
    output: str,
) -> int:
    """Show the audit log, newest first (admins)."""
    page = env.client().list_audit(
        actor=actor,
        action=action,
        target=target,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    emit(page.items, AUDIT_COLUMNS, output, empty="no audit entries", data=page)
    if output in ("table", "wide") and page.total > offset + len(page.items):
        more = page.total - offset - len(page.items)
        click.echo(f"({more} more: --offset {offset + len(page.items)})", err=True)
    return ExitCode.OK


# --- backups ----------------------------------------------------------------------------

BACKUP_COLUMNS = [
    Column("NAME", lambda b: b.name, shrink=True),
    Column("SIZE", lambda b: size(b.size), align_right=True),
    Column("CREATED", lambda b: b.created_at),
    Column("KIND", lambda b: b.kind),
    Column("PACKAGES", lambda b: b.includes_packages),
]


@click.group(cls=GdosGroup, invoke_without_command=True)
@output_option
@click.pass_context
def backup(ctx: click.Context, output: str) -> int:
    """Backups of the master (admins): list, create, download, upload, restore, delete.

    Without a subcommand: the list.
    """
    if ctx.invoked_subcommand is None:
        return _list(output)
    return ExitCode.OK


@pass_env
def _list(env: Env, output: str) -> int:
    emit(env.client().list_backups(), BACKUP_COLUMNS, output, empty="no backups")
    return ExitCode.OK


@backup.command(name="list")
@output_option
def list_backups(output: str) -> int:
    """List the stored backups, newest first."""
    return _list(output)


@backup.command()
@option("--include-packages", is_flag=True, help="Put the package zips in the backup too.")
@option(
    "--download",
    "download_to",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also save the archive here.",
)
@output_option
@pass_env
def create(env: Env, include_packages: bool, download_to: Path | None, output: str) -> int:
    """Make a backup now (an online snapshot of the master's database)."""
    client = env.client()
    made = client.create_backup(include_packages=include_packages)
    emit_one(made, BACKUP_COLUMNS, output)
    if download_to is not None:
        client.download_backup(made.name, download_to)
        click.echo(f"saved {download_to}", err=True)
    return ExitCode.OK


@backup.command()
@click.argument("name")
@option(
    "-O",
    "--output-file",
    "dest",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    show_default="NAME in this folder",
    help="Where to save the archive.",
)
@pass_env
def download(env: Env, name: str, dest: Path | None) -> int:
    """Save the backup NAME as a file."""
    path = env.client().download_backup(name, dest or Path(name))
    click.echo(f"saved {path}", err=True)
    return ExitCode.OK


@backup.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_option
@pass_env
def upload(env: Env, archive: Path, output: str) -> int:
    """Store a backup ARCHIVE made by another master (checked, not restored)."""
    emit_one(env.client().upload_backup(archive), BACKUP_COLUMNS, output)
    return ExitCode.OK


RESTORE_COLUMNS = [
    Column("NAME", lambda r: r.name),
    Column("OBJECTS", lambda r: r.objects_restored, align_right=True),
    Column("NODES BACK", lambda r: r.nodes_reconnected, align_right=True),
    Column("AUDIT KEPT", lambda r: r.audit_entries_kept, align_right=True),
]


@backup.command()
@click.argument("name")
@option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@output_option
@pass_env
def restore(env: Env, name: str, yes: bool, output: str) -> int:
    """Restore the backup NAME in place (the master keeps running)."""
    confirm(f"Replace the master's state with backup {name!r}?", yes)
    emit_one(env.client().restore_backup(name), RESTORE_COLUMNS, output)
    return ExitCode.OK


@backup.command()
@click.argument("name")
@option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def delete(env: Env, name: str, yes: bool) -> int:
    """Delete the stored backup NAME."""
    confirm(f"Delete backup {name!r}?", yes)
    env.client().delete_backup(name)
    click.echo(f"deleted {name}", err=True)
    return ExitCode.OK


commands: list[click.Command] = [alerts, audit, backup]
