"""Several real masters on one PostgreSQL database and one NATS bus, for end-to-end tests.

The ``masters`` fixture (tests/conftest.py) gives a :class:`Masters` on the test's own
PostgreSQL (``db_url``) and NATS server (``nats``), and stops every master after the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from gdos_sdk.testing import LocalCluster, free_port

__all__ = ["LEADER_TTL", "Masters"]

LEADER_TTL = 5.0  # the shortest accepted: the takeover below is bounded by it


class Masters:
    """Masters a, b, c ... sharing one database, one bus, one admin and one join token."""

    def __init__(self, root: Path, db_url: str, bus: str) -> None:
        self.root, self.db_url, self.bus = root, db_url, bus
        self.nodes: dict[str, LocalCluster] = {}
        self.password = "admin-password-for-masters"
        self.join_token = "join-token-for-masters-0123456789"

    def start(
        self, name: str, env: dict[str, str] | None = None, *, public_url: bool = True
    ) -> LocalCluster:
        """Start master ``name``; ``public_url``: its ``server.public_url`` is its own URL."""
        local = LocalCluster(self.root / name, db_url=self.db_url, admin_password=self.password)
        local.join_token = self.join_token
        local.master_port = free_port()
        self.nodes[name] = local
        settings = {
            "OPS_MASTER_CLUSTER_LEADER_TTL": str(LEADER_TTL),
            "OPS_MASTER_DATABASE_FLUSH_INTERVAL": "1",  # flushes run into an outage too
            # one package folder for all, as they would share MinIO (docs/scale-out.md)
            "OPS_MASTER_STORAGE_LOCAL_DIR": str(self.root / "packages"),
        }
        if public_url:  # where workers dial a terminal opened here back to
            settings["OPS_MASTER_SERVER_PUBLIC_URL"] = local.url
        local.start_master("-bus", self.bus, "-master_id", name, env={**settings, **(env or {})})
        return local

    def health(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(self.nodes[name].url + "/healthz", timeout=2).json()
        return data

    def leaders(self, names: list[str]) -> list[str]:
        return [n for n in names if self.health(n).get("leader")]

    def close(self) -> None:
        for local in self.nodes.values():
            local.close()
