"""What every ``gdos`` command shares: exit codes, errors, options, the client.

Commands are plain click commands; they get the :class:`Env` (which master, which
credential, which output format) from the click context with :func:`pass_env`, and
raise :class:`~gdos_sdk.GdosError` (or :class:`CliError`) on failure: :func:`run_cli`
turns every error into one line on stderr and the exit code of :class:`ExitCode`.
"""

from __future__ import annotations

import enum
import functools
import os
import sys
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import click
from click.core import ParameterSource

from gdos_sdk import AsyncClient, Client
from gdos_sdk.codec import suggest
from gdos_sdk.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    GdosError,
    NotFoundError,
    TransportError,
    ValidationError,
)

__all__ = [
    "FORMATS",
    "CliError",
    "Env",
    "ExitCode",
    "GdosCommand",
    "GdosGroup",
    "GdosOption",
    "confirm",
    "exit_code_for",
    "option",
    "output_option",
    "pass_env",
]

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

FORMATS = ("table", "wide", "json", "yaml")


class ExitCode(enum.IntEnum):
    """How ``gdos`` ends (docs/cli.md lists them; ``gdos run`` and ``gdos ssh`` pass on
    the exit status of the remote command or shell instead when they got that far)."""

    OK = 0
    FAILED = 1  # the master or a worker refused or failed the operation
    USAGE = 2  # a bad command line, an ambiguous name, input the master found invalid
    AUTH = 3  # not logged in, a bad or revoked token, not allowed for the role
    NOT_FOUND = 4  # no such node, instance, package, ...
    CONFLICT = 5  # clashes with the current state (node offline, exists, in use)
    UNREACHABLE = 6  # the master cannot be reached
    INTERRUPTED = 130  # Ctrl-C


class CliError(GdosError):
    """An error found by the command line itself (a name that matches nothing, or many)."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_for(exc: GdosError) -> ExitCode:
    """The exit code of an error (see :class:`ExitCode`)."""
    if isinstance(exc, CliError):
        return exc.exit_code
    for cls, code in (
        (ValidationError, ExitCode.USAGE),
        (AuthError, ExitCode.AUTH),
        (ConfigError, ExitCode.AUTH),  # no master URL or credential configured
        (NotFoundError, ExitCode.NOT_FOUND),
        (ConflictError, ExitCode.CONFLICT),
        (TransportError, ExitCode.UNREACHABLE),
    ):
        if isinstance(exc, cls):
            return code
    return ExitCode.FAILED


# --- options ----------------------------------------------------------------------------


class GdosOption(click.Option):
    """An option whose help always shows its default and its environment variable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("show_envvar", True)
        if kwargs.get("is_flag") and not kwargs.get("default"):
            kwargs.setdefault("show_default", "off")
        elif kwargs.get("default") is None:
            kwargs.setdefault("show_default", "none")
        else:
            kwargs.setdefault("show_default", True)
        super().__init__(*args, **kwargs)


def option(*decls: str, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` with the default and the environment variable in ``--help``."""
    return click.option(*decls, cls=GdosOption, **kwargs)


def output_option(func: F) -> F:
    """``-o table|wide|json|yaml`` (``GDOS_OUTPUT``), for every listing."""
    return option(
        "-o",
        "--output",
        type=click.Choice(FORMATS),
        default="table",
        envvar="GDOS_OUTPUT",
        help="Output format: a table, a wider table, or the API's models as JSON or YAML.",
    )(func)


# --- commands and groups ----------------------------------------------------------------


def _guess_option(ctx: click.Context, exc: click.NoSuchOption) -> click.NoSuchOption:
    """The same message whatever click's version: the one closest option, if any."""
    known = [o for p in ctx.command.params if isinstance(p, click.Option) for o in p.opts]
    known += ctx.help_option_names
    guess = suggest(exc.option_name, known)
    hint = f" Did you mean {guess!r}?" if guess else ""
    return click.NoSuchOption(
        exc.option_name, message=f"No such option {exc.option_name!r}.{hint}", ctx=ctx
    )


class GdosCommand(click.Command):
    """A command whose unknown options get one "did you mean" guess."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            raise _guess_option(ctx, exc) from None


class GdosGroup(click.Group):
    """A group that guesses a mistyped subcommand or option, and keeps its commands in the
    order they were added."""

    command_class = GdosCommand

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            raise _guess_option(ctx, exc) from None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group_class = GdosGroup

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            guess = suggest(name, [n for n, c in self.commands.items() if not c.hidden])
            hint = f" Did you mean {guess!r}?" if guess else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)


def confirm(question: str, yes: bool) -> None:
    """Ask before something that cannot be undone; ``--yes`` (needed without a terminal)
    skips the question."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(f"{question} Add --yes to do it without a terminal.", ExitCode.USAGE)
    if not click.confirm(question, err=True):
        raise click.exceptions.Abort()


# --- the environment of a command ------------------------------------------------------


class Env:
    """Which master and credential the commands use (from the global options)."""

    def __init__(
        self,
        *,
        url: str | None = None,
        token: str | None = None,
        profile: str | None = None,
        insecure: bool = False,
    ) -> None:
        self.url = url
        self.token = token
        self.profile = profile
        self.insecure = insecure
        self._client: Client | None = None

    @classmethod
    def from_context(cls, ctx: click.Context) -> Env:
        """Only options given on the command line are passed on: the environment
        (``GDOS_URL``, ``GDOS_TOKEN``, ``GDOS_PROFILE``) is read by the SDK's own rules
        (a saved token goes only to the master it was saved for)."""

        def given(name: str) -> Any:
            source = ctx.get_parameter_source(name)
            return ctx.params.get(name) if source == ParameterSource.COMMANDLINE else None

        config = given("config")
        if config:
            os.environ["GDOS_CONFIG"] = config  # this process's own profile file
        return cls(
            url=given("url"),
            token=given("token"),
            profile=given("profile"),
            insecure=bool(ctx.params.get("insecure")),
        )

    def client(self) -> Client:
        """The blocking client (one per command; closed when the command ends)."""
        if self._client is None:
            ctx = click.get_current_context()
            self._client = Client(
                self.url,
                self.token,
                profile=self.profile,
                verify=False if self.insecure else None,
            )
            ctx.call_on_close(self._client.close)
        return self._client

    def async_client(self) -> AsyncClient:
        """An asyncio client (the caller closes it: ``async with``)."""
        return AsyncClient(
            self.url, self.token, profile=self.profile, verify=False if self.insecure else None
        )


def pass_env(func: Callable[Concatenate[Env, P], R]) -> Callable[P, R]:
    """Pass the :class:`Env` of the root command as the first argument."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = click.get_current_context()
        env = ctx.find_object(Env)
        if env is None:  # a command invoked on its own (tests): no global options
            env = Env()
            ctx.obj = env
        return func(env, *args, **kwargs)

    return wrapper
