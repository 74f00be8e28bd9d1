"""The ``gdos`` commands, one module per area.

A new area is a module with a ``commands`` list (click commands or groups) and one line
in :data:`COMMANDS`; ``gdos --help`` lists them in this order.
"""

from __future__ import annotations

import click

from gdos_cli.commands import auth, completion, fleet, instances, ops, rollouts, run, ssh

__all__ = ["COMMANDS"]

COMMANDS: list[click.Command] = [
    *auth.commands,
    *fleet.commands,
    *instances.commands,
    *rollouts.commands,
    *run.commands,
    *ssh.commands,
    *ops.commands,
    *completion.commands,
]
