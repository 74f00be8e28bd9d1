"""Issue 12, finding 6: the cluster join token is kept hashed, shown once.

A real master without a configured token prints the one it makes at its first start (and
never again); the token is nowhere in clear in ops.db or its -wal/-shm; GET /settings does
not show it; rotating returns a new one once and the old one stops working. A database from
an older version (the token in clear) is converted at start, and its token keeps working.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from gdos_master.db import Database
from gdos_sdk import ConflictError
from gdos_sdk.testing import LocalCluster

from .agents import HandAgent

pytestmark = pytest.mark.e2e

# LocalCluster configures a join token; an empty one lets the master make and keep its own.
OWN_TOKEN = {"OPS_MASTER_AUTH_JOIN_TOKEN": ""}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path / "cluster")
    try:
        yield local
    finally:
        local.close()


def database_bytes(cluster: LocalCluster) -> bytes:
    folder = cluster.root / "master"
    return b"".join(p.read_bytes() for p in sorted(folder.glob("ops.db*")))


def printed_token(cluster: LocalCluster) -> str | None:
    assert cluster.master is not None
    found = re.findall(r"^join token: (\S+)", cluster.master.output(), re.MULTILINE)
    assert len(found) <= 1, found
    return found[0] if found else None


def joins(cluster: LocalCluster, token: str, hostname: str) -> bool:
    """Whether a new node can join with ``token``."""
    agent = HandAgent(cluster, hostname)
    cluster.join_token = token
    try:
        agent.connect()
    except InvalidStatus as exc:
        assert exc.response.status_code == 401
        return False
    finally:
        agent.close()
    return True


def test_join_token_is_printed_once_stored_hashed_and_rotated(cluster: LocalCluster) -> None:
    cluster.start_master(env=OWN_TOKEN)
    token = printed_token(cluster)
    assert token is not None and len(token) >= 40
    worker = cluster.start_worker(env={"OPS_WORKER_CONNECT_JOIN_TOKEN": token})
    cluster.wait_worker_connected(worker)
    assert token.encode() not in database_bytes(cluster)
    with cluster.client() as gdos:
        settings = gdos.get_settings()
        assert settings.join_token_source == "database"
        assert token not in str(settings)
        rotated = gdos.rotate_join_token()
    new = rotated.join_token
    assert new != token and len(new) >= 40
    assert not joins(cluster, token, "with-the-old-token")
    assert joins(cluster, new, "with-the-new-token")
    assert new.encode() not in database_bytes(cluster)

    # A restart neither prints a token nor changes it; the joined worker keeps its credential.
    assert cluster.master is not None
    cluster.master.terminate()
    cluster.start_master(env=OWN_TOKEN)
    assert printed_token(cluster) == token  # the first start's line, not a second one
    assert joins(cluster, new, "after-restart")
    cluster.wait_worker_connected(worker)


def test_a_clear_token_from_an_older_version_is_hashed_and_scrubbed(
    cluster: LocalCluster,
) -> None:
    legacy = "legacy-join-token-kept-in-clear-by-an-older-master"
    path = cluster.root / "master" / "ops.db"
    db = Database.open(path)
    db.set_kv("join_token", legacy)
    db.close()
    assert legacy.encode() in database_bytes(cluster)
    cluster.start_master(env=OWN_TOKEN)
    assert printed_token(cluster) is None  # the cluster has a token already
    assert joins(cluster, legacy, "old-token-still-joins")
    assert legacy.encode() not in database_bytes(cluster)
    with contextlib.closing(sqlite3.connect(path)) as conn:  # no clear token row left
        assert conn.execute("SELECT value FROM kv WHERE key = 'join_token'").fetchall() == []


def test_a_configured_token_is_not_rotated_through_the_api(cluster: LocalCluster) -> None:
    cluster.start_master()
    with cluster.client() as gdos:
        assert gdos.get_settings().join_token_source == "configuration"
        with pytest.raises(ConflictError, match=r"auth\.join_token"):
            gdos.rotate_join_token()
    assert cluster.join_token.encode() not in database_bytes(cluster)
