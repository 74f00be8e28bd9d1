"""``gdos login``, ``logout``, ``whoami`` and ``profiles``: who talks to which master.

``login`` logs in with a user name and password, creates an API token named for this
machine (``gdos-cli@<hostname>``), saves it in the profile file (mode 0600, see
:mod:`gdos_sdk.profiles`) and ends the password session: later commands use the token.
Logging in again replaces the profile's token and revokes the old one. ``logout``
revokes the token on the master and removes the profile.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys

import click

from gdos_cli.core import CliError, Env, ExitCode, GdosCommand, option, output_option, pass_env
from gdos_cli.output import Column, emit, emit_one
from gdos_sdk import Client
from gdos_sdk.errors import GdosError
from gdos_sdk.models import ApiToken
from gdos_sdk.profiles import (
    DEFAULT_PROFILE,
    PROFILE_ENV,
    URL_ENV,
    Profile,
    config_path,
    load_profiles,
    remove_profile,
    save_profile,
)

__all__ = ["commands"]

TOKEN_PREFIX_LENGTH = 9  # the master shows the first 9 characters of a token ("gdos_abcd")


def _profile_name(env: Env) -> str:
    """The profile ``login``/``logout`` act on: ``--profile``, ``GDOS_PROFILE``, else the
    file's current one (logout) or ``default``."""
    return env.profile or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE


def default_token_name() -> str:
    """``gdos-cli@<this machine's hostname>``: tokens say where they live."""
    return f"gdos-cli@{socket.gethostname()}"[:100]


def _own_token(client: Client, username: str, secret: str) -> ApiToken | None:
    """The live token of ``username`` whose shown prefix is that of ``secret``."""
    prefix = secret[:TOKEN_PREFIX_LENGTH]
    found = [
        t
        for t in client.list_tokens()
        if t.username == username and t.prefix == prefix and not t.revoked
    ]
    return found[0] if len(found) == 1 else None


@click.command(cls=GdosCommand)
@click.argument("url", required=False)
@option("-u", "--user", metavar="NAME", show_default="asked", help="The user to log in as.")
@option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (scripts) instead of asking.",
)
@option(
    "--token-name",
    metavar="NAME",
    default=default_token_name,
    show_default="gdos-cli@<hostname>",
    help="The name of the API token created for this machine.",
)
@option(
    "--ca-file",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    show_default="the system's CAs",
    help="A CA bundle that signed the master's certificate (saved in the profile).",
)
@pass_env
def login(
    env: Env,
    url: str | None,
    user: str | None,
    password_stdin: bool,
    token_name: str,
    ca_file: str | None,
) -> int:
    """Log in to a master and save an API token for this machine in a profile.

    URL defaults to --url/GDOS_URL, else the profile's URL, else it is asked for.
    The token goes to the profile named by --profile (default 'default'), which
    becomes the current one.
    """
    name = _profile_name(env)
    saved = load_profiles().profiles.get(name)
    url = url or env.url or os.environ.get(URL_ENV) or (saved.url if saved else None)
    if not url:
        url = click.prompt("Master URL")
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"{url!r} is not a URL: write http://... or https://...", ExitCode.USAGE)
    user = user or click.prompt("User")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True)
    verify: bool | str = ca_file or (not env.insecure)
    with Client(url, token="", verify=verify, retries=1) as client:
        me = client.login(user, password)
        if me.user.must_change_password:
            if password_stdin or not sys.stdin.isatty():
                raise CliError(
                    f"the password of {user} must be changed first: run `gdos login` in a"
                    " terminal, or log in to the console",
                    ExitCode.AUTH,
                )
            click.echo("The password must be changed before anything else.", err=True)
            new = click.prompt("New password", hide_input=True, confirmation_prompt=True)
            me = client.change_password(password, new)
        created = client.create_token(token_name)
        path = save_profile(
            Profile(name=name, url=url, token=created.secret, verify=verify), make_current=True
        )
        if saved is not None and saved.token and saved.url.rstrip("/") == url:
            # One token per machine and profile: the one this login replaced goes.
            with contextlib.suppress(GdosError):
                old = _own_token(client, me.user.username, saved.token)
                if old is not None and old.id != created.token.id:
                    client.revoke_token(old.id)
        with contextlib.suppress(GdosError):
            client.logout()
    click.echo(
        f"Logged in to {url} as {me.user.username} ({me.user.role.value}); token"
        f" {token_name!r} saved in profile {name!r} ({path}).",
        err=True,
    )
    return ExitCode.OK


@click.command(cls=GdosCommand)
@option(
    "--keep-token",
    is_flag=True,
    help="Only forget the token here; do not revoke it on the master.",
)
@pass_env
def logout(env: Env, keep_token: bool) -> int:
    """Revoke the profile's API token on the master and remove the profile."""
    profiles = load_profiles()
    name = env.profile or os.environ.get(PROFILE_ENV) or profiles.current or DEFAULT_PROFILE
    saved = profiles.profiles.get(name)
    if saved is None:
        raise CliError(f"not logged in: there is no profile {name!r}", ExitCode.AUTH)
    if saved.token and not keep_token:
        try:
            with Client(saved.url, token=saved.token, verify=saved.verify, retries=1) as client:
                me = client.me()
                token = _own_token(client, me.user.username, saved.token)
                if token is None:
                    raise CliError("the master does not show this token", ExitCode.NOT_FOUND)
                client.revoke_token(token.id)
        except GdosError as exc:
            remove_profile(name)
            click.echo(
                f"Removed profile {name!r}, but the token was not revoked on {saved.url}:"
                f" {exc.message} (revoke it in the console if it still works).",
                err=True,
            )
            return ExitCode.FAILED
    remove_profile(name)
    click.echo(f"Logged out of {saved.url}: profile {name!r} removed.", err=True)
    return ExitCode.OK


ME_COLUMNS = [
    Column("USER", lambda m: m.user.username),
    Column("ROLE", lambda m: m.user.role),
    Column("AUTH", lambda m: m.auth),
]


@click.command(cls=GdosCommand)
@output_option
@pass_env
def whoami(env: Env, output: str) -> int:
    """Show who the current credential belongs to, on which master."""
    client = env.client()
    me = client.me()
    if output in ("json", "yaml"):
        emit_one(me, ME_COLUMNS, output)
    else:
        click.echo(f"{me.user.username} ({me.user.role.value}) on {client.base_url}")
    return ExitCode.OK


PROFILE_COLUMNS = [
    Column("CURRENT", lambda p: "*" if p["current"] else ""),
    Column("NAME", lambda p: p["name"], shrink=True),
    Column("URL", lambda p: p["url"], shrink=True),
    Column("TOKEN", lambda p: "set" if p["token"] else "none"),
    Column("VERIFY", lambda p: p["verify"], wide=True),
]


@click.command(cls=GdosCommand)
@output_option
def profiles(output: str) -> int:
    """List the saved profiles (never their tokens)."""
    found = load_profiles()
    rows = [
        {
            "name": p.name,
            "url": p.url,
            "current": p.name == found.current,
            "token": bool(p.token),
            "verify": p.verify,
        }
        for p in sorted(found.profiles.values(), key=lambda p: p.name)
    ]
    emit(rows, PROFILE_COLUMNS, output, empty=f"no profiles in {config_path()} (gdos login)")
    return ExitCode.OK


commands: list[click.Command] = [login, logout, whoami, profiles]
