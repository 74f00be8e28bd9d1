"""Metric collectors: the node's fingerprint and per-second node and instance samples.

Example::

    from gdos_sdk.metrics import NodeSampler, ProcessTreeSampler, collect_fingerprint

    fingerprint = collect_fingerprint()
    node = NodeSampler.from_fingerprint(fingerprint)
    trees = ProcessTreeSampler()
    node.sample(), trees.sample("inst-1", pid)
"""

from __future__ import annotations

from gdos_sdk.metrics.collect import NodeSampler, ProcessTreeSampler
from gdos_sdk.metrics.fingerprint import PSEUDO_FILESYSTEMS, collect_fingerprint, local_addresses

__all__ = [
    "PSEUDO_FILESYSTEMS",
    "NodeSampler",
    "ProcessTreeSampler",
    "collect_fingerprint",
    "local_addresses",
]
