"""Batch job models survive the codec; requests are checked on construction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdos_sdk.batches import BatchItem, BatchJob, BatchRequest, BatchState, BatchTier
from gdos_sdk.codec import structure, unstructure
from gdos_sdk.states import Health, InstanceState

text = st.text(max_size=8)
times = st.one_of(st.none(), st.floats(0, 2e9))
items = st.builds(
    BatchItem,
    instance_id=text,
    module_id=text,
    module=text,
    node_id=text,
    order=st.integers(0, 1000),
    state=st.sampled_from(BatchState),
    started_at=times,
    finished_at=times,
    instance_state=st.one_of(st.none(), st.sampled_from(InstanceState)),
    health=st.one_of(st.none(), st.sampled_from(Health)),
    error=text,
)
tiers = st.builds(
    BatchTier,
    order=st.integers(0, 1000),
    modules=st.lists(text, max_size=3),
    state=st.sampled_from(BatchState),
    started_at=times,
    finished_at=times,
)
jobs = st.builds(
    BatchJob,
    id=text,
    system_id=text,
    action=st.sampled_from(["start", "stop"]),
    user=text,
    concurrency=st.integers(1, 100),
    wait_healthy=st.booleans(),
    tier_timeout=st.floats(0.1, 1e4),
    min_running=st.floats(0, 100),
    state=st.sampled_from(BatchState),
    started_at=st.floats(0, 2e9),
    tiers=st.lists(tiers, max_size=3),
    items=st.lists(items, max_size=4),
    finished_at=times,
    error=text,
)


@given(jobs)
def test_batch_job_round_trips(job: BatchJob) -> None:
    assert structure(unstructure(job), BatchJob) == job


def test_batch_request_checks_its_numbers() -> None:
    assert BatchRequest(action="stop").concurrency == 4
    with pytest.raises(ValueError, match="concurrency"):
        BatchRequest(action="start", concurrency=0)
    with pytest.raises(ValueError, match="tier_timeout"):
        BatchRequest(action="start", tier_timeout=0)
    with pytest.raises(ValueError, match="min_running"):
        BatchRequest(action="start", min_running=-1)
