"""Pure pieces: states, backoff, restart policy, errors, codec round trips."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdos_sdk import errors
from gdos_sdk.backoff import Backoff
from gdos_sdk.codec import converter, dumps, loads
from gdos_sdk.models import (
    AuditEntry,
    Disk,
    Fingerprint,
    Instance,
    InstanceSample,
    Node,
    NodeSample,
    NodeStatus,
    Role,
)
from gdos_sdk.protocol import (
    DeployCommand,
    Heartbeat,
    Hello,
    InstanceSpec,
    InstanceStatus,
    Request,
    Response,
    StopCommand,
    decode,
    encode,
)
from gdos_sdk.restart import RestartTracker
from gdos_sdk.states import DesiredState, Health, InstanceState, InvalidTransition, check_transition


def test_transitions() -> None:
    check_transition(InstanceState.STOPPED, InstanceState.STARTING)
    check_transition(InstanceState.RUNNING, InstanceState.BACKOFF)
    with pytest.raises(InvalidTransition):
        check_transition(InstanceState.STOPPED, InstanceState.RUNNING)
    with pytest.raises(InvalidTransition):
        check_transition(InstanceState.STOPPING, InstanceState.RUNNING)


def test_backoff_grows_caps_jitters_and_resets() -> None:
    backoff = Backoff(initial=0.5, maximum=30, rng=random.Random(1))
    delays = [backoff.next() for _ in range(10)]
    assert 0.4 <= delays[0] <= 0.6
    assert all(d <= 30 for d in delays) and max(delays) > 20
    bases = [0.5 * 2**i for i in range(6)]
    for delay, base in zip(delays, bases, strict=False):
        assert base * 0.8 <= delay <= base * 1.2
    backoff.reset()
    assert backoff.next() <= 0.6


def test_restart_policy_growing_delay_then_give_up() -> None:
    tracker = RestartTracker(
        policy="always",
        max_restarts=3,
        window_seconds=60,
        backoff_initial=1,
        backoff_max=3,
        start_seconds=1,
    )
    decisions = [tracker.on_exit(now=float(t), ran_for=0.1, exit_code=1) for t in range(4)]
    assert [d.restart for d in decisions] == [True, True, True, False]
    assert [d.delay for d in decisions[:3]] == [1, 2, 3]  # capped at backoff_max
    assert decisions[3].give_up and "giving up" in decisions[3].reason


def test_restart_window_forgets_old_restarts_and_long_runs_reset_backoff() -> None:
    tracker = RestartTracker(
        policy="always", max_restarts=2, window_seconds=10, backoff_initial=1, start_seconds=1
    )
    assert tracker.on_exit(now=0, ran_for=0.1, exit_code=1).delay == 1
    assert tracker.on_exit(now=1, ran_for=0.1, exit_code=1).delay == 2
    assert tracker.on_exit(now=2, ran_for=0.1, exit_code=1).give_up
    later = tracker.on_exit(now=30, ran_for=25, exit_code=1)
    assert later.restart and later.delay == 0


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("never", 1, False),
        ("on-failure", 0, False),
        ("on-failure", 1, True),
        ("on-failure", None, True),
        ("always", 0, True),
    ],
)
def test_restart_policies(policy: str, code: int | None, restart: bool) -> None:
    decision = RestartTracker(policy=policy).on_exit(now=0, ran_for=5, exit_code=code)
    assert decision.restart is restart and not decision.give_up


def test_errors_round_trip_through_their_body() -> None:
    for cls in (
        errors.NotFoundError,
        errors.ConflictError,
        errors.ValidationError,
        errors.PermissionDenied,
        errors.AuthError,
        errors.TooLargeError,
        errors.ManifestError,
        errors.RateLimitedError,
        errors.StorageError,
    ):
        original = cls("boom", details={"x": 1})
        rebuilt = errors.error_from_body(cls.status, original.to_body())
        assert type(rebuilt) is cls and rebuilt.message == "boom" and rebuilt.details == {"x": 1}
    assert isinstance(errors.error_from_body(404, None), errors.NotFoundError)
    assert isinstance(errors.NotFoundError("x"), LookupError)
    assert isinstance(errors.ValidationError("x"), ValueError)


def test_bad_json_and_unknown_fields_name_the_path() -> None:
    with pytest.raises(errors.ValidationError) as caught:
        loads(
            '{"module_id": "m", "node_id": "n", "strat": true}',
            __import__("gdos_sdk.models", fromlist=["DeployRequest"]).DeployRequest,
        )
    assert caught.value.details[0]["path"] == "$.strat"
    assert "did you mean 'start'" in caught.value.message
    with pytest.raises(errors.ValidationError):
        loads("{oops", dict)


def test_protocol_rejects_garbage() -> None:
    for frame in ("nope", "[]", '{"type": "nope"}', '{"type": "heartbeat", "ts": "x"}'):
        with pytest.raises(errors.ProtocolError):
            decode(frame)


# --- hypothesis round trips ------------------------------------------------------------------

text = st.text(max_size=20)
floats = st.floats(allow_nan=False, allow_infinity=False, width=32)
ints = st.integers(min_value=0, max_value=2**40)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)

fingerprints = st.builds(
    Fingerprint,
    os=text,
    os_version=text,
    kernel=text,
    arch=text,
    cpu_model=text,
    cpu_cores=ints,
    cpu_physical_cores=ints,
    memory_bytes=ints,
    disks=st.lists(
        st.builds(Disk, device=text, mountpoint=text, fstype=text, total_bytes=ints), max_size=3
    ),
    macs=st.lists(text, max_size=3),
    machine_id=st.none() | text,
    boot_time=floats,
    python=text,
)
node_samples = st.builds(
    NodeSample,
    ts=floats,
    cpu_percent=floats,
    load1=floats,
    load5=floats,
    load15=floats,
    mem_total=ints,
    mem_used=ints,
    mem_percent=floats,
    swap_total=ints,
    swap_used=ints,
    disk_read_bps=floats,
    disk_write_bps=floats,
    uptime_seconds=floats,
)
instance_samples = st.builds(
    InstanceSample,
    ts=floats,
    instance_id=text,
    cpu_percent=floats,
    rss_bytes=ints,
    read_bps=floats,
    write_bps=floats,
    threads=ints,
    open_files=ints,
    processes=ints,
)
statuses = st.builds(
    InstanceStatus,
    instance_id=text,
    desired_state=st.sampled_from(DesiredState),
    state=st.sampled_from(InstanceState),
    health=st.sampled_from(Health),
    pid=st.none() | ints,
    started_at=st.none() | floats,
    restarts=ints,
    exit_code=st.none() | st.integers(-255, 255),
    reason=text,
)
specs = st.builds(
    InstanceSpec,
    instance_id=text,
    module_id=text,
    system_id=text,
    module_name=text,
    package=text,
    version=text,
    sha256=text,
    size=ints,
    download_path=text,
    manifest=st.dictionaries(text, text, max_size=3),
    env=st.dictionaries(text, text, max_size=3),
    args=st.none() | st.lists(text, max_size=3),
)
messages = st.one_of(
    st.builds(
        Hello,
        protocol=ints,
        node_id=text,
        hostname=text,
        agent_version=text,
        fingerprint=fingerprints,
        addresses=st.lists(text, max_size=2),
        instances=st.lists(statuses, max_size=2),
    ),
    st.builds(
        Heartbeat,
        ts=floats,
        node_samples=st.lists(node_samples, max_size=2),
        instance_samples=st.lists(instance_samples, max_size=2),
    ),
    st.builds(
        Request,
        id=text,
        command=st.one_of(
            st.builds(StopCommand, instance_id=text),
            st.builds(DeployCommand, spec=specs, start=st.booleans()),
        ),
        timeout=floats,
    ),
    st.builds(Response, id=text, ok=st.booleans(), result=st.none() | statuses),
)


@given(messages)
def test_protocol_messages_round_trip(message: object) -> None:
    assert decode(encode(message)) == message  # type: ignore[arg-type]


@given(
    st.builds(
        Node,
        id=text,
        hostname=text,
        alias=text,
        status=st.sampled_from(NodeStatus),
        fingerprint=st.none() | fingerprints,
        created_at=st.none() | times,
        last_seen=st.none() | times,
        latest=st.none() | node_samples,
    )
)
def test_node_round_trip(node: Node) -> None:
    assert loads(dumps(node), Node) == node


@given(
    st.builds(
        Instance,
        id=text,
        module_id=text,
        system_id=text,
        node_id=text,
        package=text,
        version=text,
        desired_state=st.sampled_from(DesiredState),
        state=st.sampled_from(InstanceState),
        metrics=st.none() | instance_samples,
        created_at=st.none() | times,
    )
)
def test_instance_round_trip(instance: Instance) -> None:
    assert converter.structure(converter.unstructure(instance), Instance) == instance


@given(
    st.builds(
        AuditEntry,
        id=ints,
        ts=times,
        actor_kind=text,
        actor=text,
        ip=text,
        action=text,
        target=text,
        params=st.dictionaries(text, text, max_size=3),
        result=text,
        status=ints,
    )
)
def test_audit_round_trip(entry: AuditEntry) -> None:
    assert loads(dumps(entry), AuditEntry) == entry


def test_role_order() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and not Role.VIEWER.allows(Role.OPERATOR)
