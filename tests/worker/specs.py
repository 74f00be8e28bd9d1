"""Instance specs for worker tests: the fields a test does not care about, filled in."""

from __future__ import annotations

from typing import Any

from gdos_sdk.protocol import InstanceSpec
from gdos_sdk.states import DesiredState, InstanceState
from gdos_worker.state import InstanceRecord


def instance_spec(**fields: Any) -> InstanceSpec:
    """An :class:`InstanceSpec` of instance ``i-1`` (module ``m`` of system ``s``)."""
    defaults: dict[str, Any] = {
        "instance_id": "i-1",
        "module_id": "m",
        "system_id": "s",
        "module_name": "web",
        "package": "",
        "version": "",
        "sha256": "",
        "size": 0,
        "download_path": "",
        "manifest": {},
    }
    return InstanceSpec(**{**defaults, **fields})


def stopped_record(spec: InstanceSpec) -> InstanceRecord:
    """A record of ``spec`` that is stopped and meant to be."""
    return InstanceRecord(
        spec=spec, desired_state=DesiredState.STOPPED, state=InstanceState.STOPPED
    )
