"""Helpers to run a real master and workers on loopback, for tests and notebooks.

:class:`LocalCluster` (also ``gdos_sdk.LocalCluster``) lives in :mod:`gdos_sdk.cluster`;
this module keeps the names the test suites import from it.

Example::

    with LocalCluster(Path("/tmp/c1")) as cluster:
        cluster.start_master()
        cluster.start_worker()
        with cluster.client() as gdos:
            print(gdos.list_nodes())
"""

from __future__ import annotations

from gdos_sdk.cluster import (
    LocalCluster,
    ManagedProcess,
    ProcessExited,
    TlsFiles,
    free_port,
    kill_instances_under,
    wait_until,
)

__all__ = [
    "LocalCluster",
    "ManagedProcess",
    "ProcessExited",
    "TlsFiles",
    "free_port",
    "kill_instances_under",
    "wait_until",
]
