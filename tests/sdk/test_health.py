"""Health checks: validation of service.json checks and overrides, and the pure tracker."""

from __future__ import annotations

from typing import Any

import pytest

from gdos_sdk.errors import ManifestError
from gdos_sdk.health import FAST_INTERVAL, HealthTracker
from gdos_sdk.manifest import CheckRestart, HealthCheck, Manifest
from gdos_sdk.states import Health


def problems(check: Any) -> dict[str, str]:
    body = {"name": "x", "version": "1.0.0", "entrypoint": "run", "health_check": check}
    with pytest.raises(ManifestError) as caught:
        Manifest.from_dict(body)
    return {p["path"]: p["message"] for p in caught.value.details}


def test_check_restart_is_parsed_with_defaults() -> None:
    m = Manifest.from_dict(
        {
            "name": "x",
            "version": "1.0.0",
            "entrypoint": "run",
            "health_check": {"type": "tcp", "port": 80, "check_restart": {"limit": 2}},
        }
    )
    assert m.health_check is not None
    assert m.health_check.check_restart == CheckRestart(limit=2, grace=1.0)
    assert Manifest.from_dict(m.to_dict()) == m
    schema = Manifest.json_schema()
    assert "check_restart" in schema["$defs"]["HealthCheck"]["properties"]
    assert schema["$defs"]["CheckRestart"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("check", "path", "words"),
    [
        ({"type": "tcp", "port": 1, "check_restart": {"limt": 2}}, "check_restart.limt", "limit"),
        ({"type": "tcp", "port": 1, "check_restart": {"limit": 0}}, "check_restart.limit", ">= 1"),
        ({"type": "tcp", "port": 1, "check_restart": {"grace": -1}}, "check_restart.grace", ">= 0"),
        ({"type": "tcp", "port": 1, "check_restart": 3}, "check_restart", "expected an object"),
        ({"type": "tcp", "port": "80"}, "port", "expected integer or null, got string"),
        ({"type": "tcp", "port": 1, "interval": 0}, "interval", "> 0"),
        ({"type": "tcp", "port": 1, "retries": 0}, "retries", ">= 1"),
        ({"type": "tcp", "port": 1, "start_period": -1}, "start_period", ">= 0"),
        ({"type": "http", "url": "localhost:80"}, "url", "http:// or https://"),
        ({"type": "cmd", "command": ["ok", 3]}, "command[1]", "expected string"),
        ({"type": "cmd"}, "command", "required when type is 'cmd'"),
        ({"type": "htp", "url": "http://x"}, "type", "did you mean 'http'"),
    ],
)
def test_bad_checks_name_the_field(check: dict[str, Any], path: str, words: str) -> None:
    found = problems(check)
    assert f"$.health_check.{path}" in found, found
    assert words in found[f"$.health_check.{path}"]


def test_override_validation_uses_the_callers_path() -> None:
    with pytest.raises(ManifestError) as caught:
        HealthCheck.from_dict({"type": "tcp", "prot": 80}, path="$.health_check")
    paths = [p["path"] for p in caught.value.details]
    assert paths == ["$.health_check.prot", "$.health_check.port"]
    assert "did you mean 'port'" in caught.value.details[0]["message"]
    assert HealthCheck.from_dict({"type": "tcp", "port": 80}).port == 80


def tracker(**kwargs: Any) -> HealthTracker:
    check = HealthCheck(type="tcp", port=1, **kwargs)
    found = HealthTracker.for_check(check)
    found.begin(now=0.0)
    return found


def test_retries_failures_make_it_unhealthy_and_one_success_heals() -> None:
    t = tracker(retries=2)
    assert t.health == Health.STARTING
    assert t.record(False, now=1).health == Health.STARTING
    assert t.record(False, now=2).health == Health.UNHEALTHY
    assert t.record(True, now=3).health == Health.HEALTHY
    assert t.record(False, now=4).health == Health.HEALTHY  # one failure is not enough
    assert not t.record(False, now=5).restart  # no check_restart: report only


def test_start_period_failures_do_not_count_until_the_first_success() -> None:
    t = tracker(retries=1, start_period=10, interval=5)
    assert t.delay(now=1) == FAST_INTERVAL  # look often while booting
    assert t.record(False, now=1).health == Health.STARTING
    assert t.record(True, now=2).health == Health.HEALTHY
    assert t.record(False, now=3).health == Health.UNHEALTHY  # healthy once: counts now
    assert t.delay(now=3) == 5
    late = tracker(retries=1, start_period=10)
    assert late.record(False, now=11).health == Health.UNHEALTHY


def test_check_restart_needs_limit_failures_after_grace() -> None:
    t = tracker(retries=1, check_restart=CheckRestart(limit=2, grace=5))
    assert not t.record(False, now=1).restart  # in grace: does not count for restarts
    assert not t.record(False, now=2).restart
    assert t.health == Health.UNHEALTHY
    assert not t.record(False, now=6).restart
    assert t.record(False, now=7).restart
    assert not t.record(False, now=8).restart  # asked again only after `limit` more
    assert t.record(False, now=9).restart
    t.begin(now=10)  # the restarted run starts from scratch
    assert t.health == Health.STARTING and t.failures == 0
    assert not t.record(True, now=16).restart
    assert not t.record(False, now=17).restart
