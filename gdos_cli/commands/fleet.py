"""``gdos nodes``, ``systems``, ``modules``, ``packages`` and ``push``: what the fleet has."""

from __future__ import annotations

from pathlib import Path

import click

from gdos_cli.core import Env, ExitCode, GdosCommand, option, output_option, pass_env
from gdos_cli.output import Column, age, emit, emit_one, short_id, size
from gdos_cli.resolve import Names
from gdos_sdk.models import Node, NodeStatus

__all__ = ["commands"]


def _cpu(node: Node) -> float | None:
    return node.latest.cpu_percent if node.latest else None


def _mem(node: Node) -> float | None:
    return node.latest.mem_percent if node.latest else None


def _os(node: Node) -> str:
    fp = node.fingerprint
    return f"{fp.os} {fp.os_version}".strip() if fp else ""


NODE_COLUMNS = [
    Column("HOSTNAME", lambda n: n.hostname, shrink=True),
    Column("ALIAS", lambda n: n.alias, shrink=True),
    Column("STATUS", lambda n: n.status),
    Column("CPU%", _cpu, align_right=True),
    Column("MEM%", _mem, align_right=True),
    Column("INSTANCES", lambda n: n.instance_count, align_right=True),
    Column("SEEN", lambda n: age(n.last_seen) if n.last_seen else None),
    Column("ID", lambda n: short_id(n.id)),
    Column("NODE ID", lambda n: n.id, wide=True),
    Column("ADDRESSES", lambda n: n.addresses, wide=True, shrink=True),
    Column("LABELS", lambda n: n.labels, wide=True, shrink=True),
    Column("OS", _os, wide=True, shrink=True),
    Column("AGENT", lambda n: n.agent_version, wide=True),
]


@click.command(cls=GdosCommand)
@option(
    "--status",
    type=click.Choice([s.value for s in NodeStatus]),
    help="Only nodes in this status.",
)
@option("--search", metavar="TEXT", help="Only nodes whose hostname, alias, id or address has it.")
@output_option
@pass_env
def nodes(env: Env, status: str | None, search: str | None, output: str) -> int:
    """List the nodes with their status and latest CPU and memory use."""
    found = env.client().list_nodes(status=status, search=search)
    emit(found, NODE_COLUMNS, output, empty="no nodes")
    return ExitCode.OK


SYSTEM_COLUMNS = [
    Column("NAME", lambda s: s.name, shrink=True),
    Column("MODULES", lambda s: s.module_count, align_right=True),
    Column("INSTANCES", lambda s: s.instance_count, align_right=True),
    Column("AGE", lambda s: age(s.created_at)),
    Column("ID", lambda s: short_id(s.id)),
    Column("SYSTEM ID", lambda s: s.id, wide=True),
    Column("DESCRIPTION", lambda s: s.description, wide=True, shrink=True),
]


@click.command(cls=GdosCommand)
@output_option
@pass_env
def systems(env: Env, output: str) -> int:
    """List the systems (groups of modules deployed together)."""
    emit(env.client().list_systems(), SYSTEM_COLUMNS, output, empty="no systems")
    return ExitCode.OK


@click.command(cls=GdosCommand)
@click.argument("system", required=False)
@output_option
@pass_env
def modules(env: Env, system: str | None, output: str) -> int:
    """List the modules of SYSTEM (a name or id), or of every system."""
    names = Names(env.client())
    found = names.modules(names.system(system).id) if system else names.all_modules()
    columns = [
        Column("MODULE", names.module_label, shrink=True),
        Column("PACKAGE", lambda m: m.package, shrink=True),
        Column("VERSION", lambda m: m.version),
        Column("KIND", lambda m: m.kind),
        Column("ORDER", lambda m: m.start_order, align_right=True, wide=True),
        Column("ID", lambda m: short_id(m.id)),
        Column("MODULE ID", lambda m: m.id, wide=True),
    ]
    emit(found, columns, output, empty="no modules")
    return ExitCode.OK


PACKAGE_COLUMNS = [
    Column("NAME", lambda p: p.name, shrink=True),
    Column("LATEST", lambda p: p.latest),
    Column("VERSIONS", lambda p: len(p.versions), align_right=True),
    Column("ALL VERSIONS", lambda p: p.versions, wide=True, shrink=True),
    Column("DESCRIPTION", lambda p: p.description, shrink=True),
]


@click.command(cls=GdosCommand)
@option("--search", metavar="TEXT", help="Only packages whose name has it.")
@output_option
@pass_env
def packages(env: Env, search: str | None, output: str) -> int:
    """List the packages in the master's store, with their latest version."""
    emit(env.client().list_packages(search=search), PACKAGE_COLUMNS, output, empty="no packages")
    return ExitCode.OK


UPLOADED_COLUMNS = [
    Column("NAME", lambda p: p.name, shrink=True),
    Column("VERSION", lambda p: p.version),
    Column("SIZE", lambda p: size(p.size), align_right=True),
    Column("SHA256", lambda p: p.sha256[:12]),
    Column("UPLOADED BY", lambda p: p.uploaded_by),
]


@click.command(cls=GdosCommand)
@click.argument("package", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@option("--force", is_flag=True, help="Replace a stored version that has other bytes.")
@output_option
@pass_env
def push(env: Env, package: Path, force: bool, output: str) -> int:
    """Upload PACKAGE (a zip built with gdos-pack) to the master."""
    stored = env.client().upload_package(package, force=force)
    emit_one(stored, UPLOADED_COLUMNS, output)
    return ExitCode.OK


commands: list[click.Command] = [nodes, systems, modules, packages, push]
