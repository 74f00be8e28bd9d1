"""Ordered batch actions on a system: the request, the job and its progress (models only).

A batch start groups a system's instances into tiers by their module's
``start_order`` (lowest first) and starts one tier at a time, at most
``concurrency`` instances at once; the next tier begins only when every
instance of the current one is ``running`` and, when it has a health check,
``healthy``. A batch stop goes through the tiers in reverse. The master runs
it as a job you can watch (``GET /batches/<id>``, live topic ``batch:<id>``).

Example::

    job = gdos.start_batch(system_id, "start", concurrency=2)
    job = gdos.get_batch(job.id, wait=60)
    [(t.order, t.state) for t in job.tiers]
"""

from __future__ import annotations

import enum
from typing import Literal

import attrs

from gdos_sdk.constraints import Check
from gdos_sdk.display import displayed
from gdos_sdk.states import Health, InstanceState

__all__ = ["BatchItem", "BatchJob", "BatchRequest", "BatchState", "BatchTier"]


class BatchState(enum.StrEnum):
    """Progress of a job, a tier or one instance."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # a start tier after a failed one is never begun


@displayed
@attrs.frozen
class BatchRequest:
    """Start or stop a system's instances tier by tier.

    Parameters:
        action: ``start`` (tiers by ascending ``start_order``) or ``stop`` (descending).
        concurrency: instances being started (until running, or healthy when waiting for
            health) or stopped at once within a tier; the ``min_running`` check of one
            that runs does not take a place.
        wait_healthy: a start waits for instances with a health check to be healthy.
        tier_timeout: seconds a tier may take before the batch fails.
        min_running: seconds an instance must stay running to count as started when
            there is no health check to wait for (a service that dies at once fails the
            batch instead of passing it).
    """

    action: Literal["start", "stop"]
    concurrency: int = attrs.field(default=4, validator=Check(minimum=1))
    wait_healthy: bool = True
    tier_timeout: float = attrs.field(default=120.0, validator=Check(exclusive_minimum=0))
    min_running: float = attrs.field(default=1.0, validator=Check(minimum=0))


@displayed
@attrs.frozen
class BatchItem:
    """One instance in a batch."""

    instance_id: str
    module_id: str
    module: str
    node_id: str
    order: int
    state: BatchState = BatchState.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    instance_state: InstanceState | None = None
    health: Health | None = None
    error: str = ""


@displayed
@attrs.frozen
class BatchTier:
    """The instances of the modules sharing one ``start_order``."""

    order: int
    modules: list[str]
    state: BatchState = BatchState.PENDING
    started_at: float | None = None
    finished_at: float | None = None


@displayed
@attrs.frozen
class BatchJob:
    """A batch action and its progress; ``state`` ends ``done`` or ``failed``."""

    id: str
    system_id: str
    action: str
    user: str
    concurrency: int
    wait_healthy: bool
    tier_timeout: float
    min_running: float
    state: BatchState
    started_at: float
    tiers: list[BatchTier]
    items: list[BatchItem]
    finished_at: float | None = None
    error: str = ""
