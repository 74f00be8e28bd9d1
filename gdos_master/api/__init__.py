"""The REST API: one module per resource, all registered on one :class:`Api`.

Handlers parse nothing and check nothing themselves: :mod:`gdos_master.routing`
authenticates, authorises, parses the body and writes the audit entry; the
handler calls one domain method and returns a model.
"""

from __future__ import annotations

from gdos_master.routing import Api

__all__ = ["api"]

api = Api()

# Importing the modules registers their endpoints on ``api``.
from gdos_master.api import (  # noqa: E402
    accounts,
    alerts,
    audit,
    backups,
    batches,
    commands,
    logs,
    meta,
    metrics,
    nodes,
    packages,
    rollouts,
    systems,
    terminal,
)

del (
    accounts,
    alerts,
    audit,
    backups,
    batches,
    commands,
    logs,
    meta,
    metrics,
    nodes,
    packages,
    rollouts,
    systems,
    terminal,
)
