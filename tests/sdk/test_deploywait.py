"""deploy(wait=...) decided without I/O: made-up readings of an instance, made-up times."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from gdos_sdk.deploywait import DeployWatch, check_wait
from gdos_sdk.errors import DeployFailed, DeployTimeout, ValidationError
from gdos_sdk.models import Instance
from gdos_sdk.states import DesiredState, Health, InstanceState

S = InstanceState


def reading(state: InstanceState, **fields: Any) -> Instance:
    base = Instance(
        id="i1",
        module_id="m1",
        system_id="s1",
        node_id="n1",
        package="web",
        version="1.0.0",
        desired_state=DesiredState.RUNNING,
        state=state,
        node_online=True,
    )
    return attrs.evolve(base, **fields)


RUN = reading(S.RUNNING, pid=100, started_at=1000.0, reason="running")


def watch(wait: Any = "stable", *, start: bool = True, window: float = 5.0) -> DeployWatch:
    return DeployWatch(wait, start, window, deadline=100.0)


def test_started_returns_the_answer_whatever_it_is() -> None:
    for state in (S.DEPLOYING, S.UNKNOWN, S.BACKOFF):
        assert watch("started").observe(reading(state), 0.0) is not None


def test_running_waits_through_deploying_starting_and_a_stopped_not_yet_started() -> None:
    w = watch("running")
    for state in (S.DEPLOYING, S.STOPPED, S.STARTING):
        assert w.observe(reading(state), 1.0) is None
    assert w.observe(RUN, 2.0) is RUN


def test_stable_needs_the_same_run_for_the_whole_window() -> None:
    w = watch("stable", window=5.0)
    assert w.observe(RUN, 10.0) is None
    assert w.observe(RUN, 14.9) is None
    assert w.stable_for(14.9) == pytest.approx(4.9)
    assert w.observe(RUN, 15.0) is RUN


@pytest.mark.parametrize(
    "later",
    [
        attrs.evolve(RUN, pid=101, started_at=1001.5, restarts=1),  # restarted between readings
        reading(S.BACKOFF, exit_code=2, reason="exited with code 2; restarting in 1.0 s"),
        reading(S.FAILED, exit_code=2, reason="exited with code 2; gave up"),
        reading(S.STOPPED, exit_code=0, reason="exited with code 0; policy on-failure"),
    ],
)
def test_an_exit_or_restart_inside_the_window_fails_the_deploy(later: Instance) -> None:
    w = watch("stable")
    assert w.observe(RUN, 0.0) is None
    with pytest.raises(DeployFailed) as failed:
        w.observe(later, 1.0)
    assert not isinstance(failed.value, DeployTimeout)
    assert failed.value.instance is later
    assert failed.value.details["state"] == later.state.value
    assert later.reason in failed.value.message


def test_a_crash_before_it_was_ever_seen_running_fails_too() -> None:
    with pytest.raises(DeployFailed, match="backoff"):
        watch("running").observe(reading(S.BACKOFF, reason="exited with code 1"), 0.0)


def test_healthy_waits_for_the_check_and_fails_when_it_fails() -> None:
    w = watch("healthy", window=1.0)
    assert w.observe(attrs.evolve(RUN, health=Health.STARTING), 0.0) is None
    assert w.observe(attrs.evolve(RUN, health=Health.STARTING), 2.0) is None  # stable, not yet
    assert w.stage == "running, health check pending"
    done = w.observe(attrs.evolve(RUN, health=Health.HEALTHY), 3.0)
    assert done is not None and done.health == Health.HEALTHY

    sick = watch("healthy")
    with pytest.raises(DeployFailed, match="health check failed"):
        sick.observe(attrs.evolve(RUN, health=Health.UNHEALTHY, reason="unhealthy: 500"), 0.0)


def test_healthy_without_a_check_is_stable() -> None:
    w = watch("healthy", window=1.0)
    assert w.observe(RUN, 0.0) is None
    assert w.observe(RUN, 1.0) is RUN


def test_a_deploy_without_start_is_done_once_installed() -> None:
    w = watch("healthy", start=False)
    assert w.observe(reading(S.DEPLOYING, desired_state=DesiredState.STOPPED), 0.0) is None
    done = w.observe(reading(S.STOPPED, desired_state=DesiredState.STOPPED), 1.0)
    assert done is not None and done.state == S.STOPPED


def test_an_offline_node_fails_at_once_and_a_stop_meanwhile_fails() -> None:
    with pytest.raises(DeployFailed, match="node is offline"):
        watch("running").observe(reading(S.UNKNOWN, node_online=False), 0.0)
    with pytest.raises(DeployFailed, match="stopped while the deploy waited"):
        watch("stable").observe(attrs.evolve(RUN, desired_state=DesiredState.STOPPED), 0.0)


def test_the_deadline_raises_deploy_timeout_with_where_it_was() -> None:
    w = DeployWatch("running", True, 5.0, deadline=10.0)
    assert w.observe(reading(S.DEPLOYING), 9.9) is None
    with pytest.raises(DeployTimeout) as late:
        w.observe(reading(S.DEPLOYING, reason="no answer yet"), 10.0)
    assert isinstance(late.value, TimeoutError) and isinstance(late.value, DeployFailed)
    assert "is deploying (no answer yet): not running within the timeout" in late.value.message


def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValidationError, match="unknown wait 'up'; one of started, running"):
        check_wait("up", 5.0, 10.0)
    with pytest.raises(ValidationError, match="min_healthy_time"):
        check_wait("stable", -1.0, 10.0)
    with pytest.raises(ValidationError, match="timeout"):
        check_wait("stable", 1.0, 0.0)


def test_deploy_failed_shows_the_log_lines() -> None:
    error = DeployFailed("it crashed", instance=RUN, log_lines=["boot", "fatal: no db"])
    assert str(error).endswith("last lines of its console log:\n    boot\n    fatal: no db")
    assert (error.state, error.reason, error.exit_code) == ("running", "running", None)
