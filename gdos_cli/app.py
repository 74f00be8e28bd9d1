"""The ``gdos`` root command, its global options, and how it ends (exit codes, errors).

Command groups live in :mod:`gdos_cli.commands`; adding one is a module with a
``commands`` list and one line in that package's ``COMMANDS``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from gdos_cli.commands import COMMANDS
from gdos_cli.core import Env, ExitCode, GdosGroup, exit_code_for, option
from gdos_sdk.__about__ import __version__
from gdos_sdk.errors import AuthError, GdosError, PasswordChangeRequired

__all__ = ["cli", "main"]

CONTEXT: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "auto_envvar_prefix": "GDOS",  # every option can also be set as GDOS_<COMMAND>_<OPTION>
    "max_content_width": 100,
}


@click.group(
    cls=GdosGroup,
    context_settings=CONTEXT,
    invoke_without_command=True,
    epilog="Exit codes: 0 ok, 1 failed, 2 usage, 3 auth, 4 not found, 5 conflict,"
    " 6 master unreachable, 130 interrupted. Reference: docs/cli.md.",
)
@option(
    "--url",
    envvar="GDOS_URL",
    metavar="URL",
    show_default="the profile's",
    help="The master, e.g. https://gdos.example.com.",
)
@option(
    "--token",
    envvar="GDOS_TOKEN",
    metavar="TOKEN",
    show_default="the profile's",
    help="An API token (gdos_...); better in the environment than on the command line.",
)
@option(
    "-p",
    "--profile",
    envvar="GDOS_PROFILE",
    metavar="NAME",
    show_default="the file's current one, else 'default'",
    help="Which saved profile (master and token) to use.",
)
@option(
    "--config",
    envvar="GDOS_CONFIG",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    show_default="$XDG_CONFIG_HOME/gdos/config.toml or ~/.config/gdos/config.toml",
    help="The profile file.",
)
@option(
    "-k",
    "--insecure",
    is_flag=True,
    envvar="GDOS_INSECURE",
    help="Do not check the master's TLS certificate (for a test master only).",
)
@click.version_option(__version__, "--version", prog_name="gdos", message="%(prog)s %(version)s")
@click.pass_context
def cli(
    ctx: click.Context,
    url: str | None,
    token: str | None,
    profile: str | None,
    config: str | None,
    insecure: bool,
) -> int:
    """Operate a GDOS fleet: nodes, packages, deployments, logs, commands, shells.

    Log in once with `gdos login URL`; the token is kept in your profile file.
    """
    ctx.obj = Env.from_context(ctx)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
    return ExitCode.OK


for _command in COMMANDS:
    cli.add_command(_command)


def _hint(exc: GdosError) -> str:
    if isinstance(exc, PasswordChangeRequired):
        return "change the password first: run `gdos login` in a terminal, or use the console"
    if type(exc) is AuthError:
        return "log in with `gdos login URL`, or set GDOS_TOKEN"
    return ""


def report(exc: GdosError) -> None:
    """One error on stderr: the message, the fields at fault, a hint."""
    click.echo(f"gdos: error: {exc.message}", err=True)
    details = exc.details if isinstance(exc.details, list) else []
    for detail in details:
        if isinstance(detail, dict) and detail.get("message"):
            where = detail.get("path", "")
            click.echo(f"  {where}: {detail['message']}" if where else f"  {detail}", err=True)
    hint = _hint(exc)
    if hint:
        click.echo(f"  hint: {hint}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gdos`` with ``argv`` (default: the process's); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="gdos", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("", err=True)
        return ExitCode.INTERRUPTED
    except GdosError as exc:
        report(exc)
        return exit_code_for(exc)
    except BrokenPipeError:  # `gdos audit | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    return int(result) if isinstance(result, int) else ExitCode.OK
