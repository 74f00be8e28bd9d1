"""Adopted modules on the master: validation, storage, deploying to an offline node."""

from __future__ import annotations

import pytest

from gdos_sdk import AdoptionSpec, AdoptionStrategy, ConflictError, NotFoundError, ValidationError
from gdos_sdk.client import AsyncClient

pytestmark = pytest.mark.anyio

NGINX = AdoptionSpec(
    strategy=AdoptionStrategy.PID_FILE,
    pid_file="/run/nginx.pid",
    name="nginx",
    start_command="nginx",
    log_paths=["/var/log/nginx/error.log"],
)


async def test_adopted_module_round_trips_without_a_package(admin: AsyncClient) -> None:
    system = await admin.create_system("legacy")
    module = await admin.create_adopted_module(system.id, "nginx", NGINX)
    assert (module.kind, module.package, module.version) == ("adopted", "", "")
    assert module.adoption == NGINX
    again = await admin.get_module(module.id)
    assert again.adoption == NGINX


async def test_adoption_spec_is_validated_with_the_field_path(admin: AsyncClient) -> None:
    system = await admin.create_system("legacy")
    bad = AdoptionSpec(strategy=AdoptionStrategy.MATCH, cmdline="([")
    with pytest.raises(ValidationError) as info:
        await admin.create_adopted_module(system.id, "x", bad)
    assert info.value.details[0]["path"] == "$.adoption.cmdline"
    with pytest.raises(ValidationError):  # a package module still needs its package
        await admin.create_module(system.id, "y", "", "")


async def test_candidates_need_a_known_online_node(admin: AsyncClient) -> None:
    with pytest.raises(NotFoundError):
        await admin.adoption_candidates("no-such-node", NGINX)
    planned = await admin.plan_node("db-1")
    with pytest.raises(ConflictError, match="offline"):
        await admin.adoption_candidates(planned.id, NGINX)
