"""``gdos completion bash|zsh|fish``: the shell completion script (click's own)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from gdos_cli.core import ExitCode, GdosCommand

__all__ = ["commands"]

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_GDOS_COMPLETE"


@click.command(cls=GdosCommand)
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> int:
    """Print the completion script for SHELL; load it from your shell's startup file.

    \b
    bash: eval "$(gdos completion bash)"      in ~/.bashrc
    zsh:  eval "$(gdos completion zsh)"       in ~/.zshrc
    fish: gdos completion fish | source       in ~/.config/fish/config.fish
    """
    cls = get_completion_class(shell)
    assert cls is not None  # every name of SHELLS is one of click's
    root = ctx.find_root().command
    click.echo(cls(root, {}, "gdos", COMPLETE_VAR).source())
    return ExitCode.OK


commands: list[click.Command] = [completion]
