"""The live channel without sockets: frames parsed by topic, subscriptions, trackers."""

from __future__ import annotations

import json
import ssl
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from gdos_master.live import View
from gdos_master.live import frame as live_frame
from gdos_master.rollouts import RolloutTopic
from gdos_sdk.alerts import ActiveAlert, AlertPhase
from gdos_sdk.batches import BatchJob, BatchState
from gdos_sdk.codec import structure, unstructure
from gdos_sdk.commands import CommandRun, NodeCommandResult, NodeRunState
from gdos_sdk.errors import NotFoundError, PermissionDenied, ProtocolError, ValidationError
from gdos_sdk.follow import (
    AlertTracker,
    BatchTracker,
    CommandTracker,
    RolloutTracker,
    SampleTracker,
)
from gdos_sdk.live import (
    AlertsFrame,
    BatchFrame,
    CommandFrame,
    FleetFrame,
    InstanceSamplesFrame,
    NodeSamplesFrame,
    NodesFrame,
    RolloutFrame,
    Session,
    check_topic,
    handshake_headers,
    live_url,
    parse_frame,
    ws_ssl_context,
)
from gdos_sdk.models import InstanceSample, NodeSample, SystemCreate
from gdos_sdk.rollouts import Rollout, RolloutItem, RolloutState, RolloutStrategy, StepState


def node_sample(ts: float) -> dict[str, Any]:
    sample = NodeSample(
        ts=ts,
        cpu_percent=1.0,
        load1=0,
        load5=0,
        load15=0,
        mem_total=8,
        mem_used=2,
        mem_percent=25.0,
        swap_total=0,
        swap_used=0,
        disk_read_bps=0,
        disk_write_bps=0,
        uptime_seconds=9,
    )
    data: dict[str, Any] = unstructure(sample)
    return data


def message(topic: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"topic": topic, "data": data}


def test_each_topic_becomes_its_typed_frame() -> None:
    fleet = parse_frame(
        message(
            "fleet",
            {
                "snapshot": True,
                "nodes": {"total": 1},
                "instances": {},
                "top_cpu": [],
                "top_mem": [],
            },
        )
    )
    assert isinstance(fleet, FleetFrame) and fleet.snapshot and fleet.nodes == {"total": 1}
    row = {
        "id": "n1",
        "hostname": "h",
        "alias": "",
        "status": "online",
        "addresses": [],
        "labels": {},
        "instance_count": 0,
        "last_seen": "2024-01-01T00:00:00Z",
        "fingerprint": None,
        "latest": None,
    }
    nodes = parse_frame(message("nodes", {"rows": [row], "removed": ["n2"]}))
    assert isinstance(nodes, NodesFrame) and not nodes.snapshot
    assert nodes.rows[0].last_seen == datetime(2024, 1, 1, tzinfo=UTC) and nodes.removed == ["n2"]
    samples = parse_frame(message("node:n1", {"samples": [node_sample(5.0)]}))
    assert isinstance(samples, NodeSamplesFrame) and samples.node_id == "n1"
    assert isinstance(samples.samples[0], NodeSample)
    one = unstructure(
        InstanceSample(
            ts=1,
            instance_id="i1",
            cpu_percent=0,
            rss_bytes=1,
            read_bps=0,
            write_bps=0,
            threads=1,
            open_files=0,
            processes=1,
        )
    )
    assert isinstance(parse_frame(message("instance:i1", {"samples": [one]})), InstanceSamplesFrame)
    job = BatchJob(
        id="b1",
        system_id="s",
        action="start",
        user="u",
        concurrency=1,
        wait_healthy=True,
        tier_timeout=1,
        min_running=1,
        state=BatchState.DONE,
        started_at=1,
        tiers=[],
        items=[],
    )
    batch = parse_frame(message("batch:b1", {"snapshot": True, **unstructure(job)}))
    assert isinstance(batch, BatchFrame) and batch.job == job and batch.snapshot
    run = CommandRun(
        id="r1",
        command="true",
        timeout=5,
        user="u",
        started_at=1,
        nodes=[NodeCommandResult(node_id="n1", stdout="so far")],
    )
    snap = parse_frame(message("command:r1", {"snapshot": True, **unstructure(run)}))
    assert isinstance(snap, CommandFrame) and snap.run == run and snap.run_id == "r1"
    alerts = parse_frame(message("alerts", {"firing": 2, "pending": 0, "reload": True}))
    assert isinstance(alerts, AlertsFrame) and alerts.reload and alerts.firing == 2
    assert len(repr(snap)) <= 120 and "<table" in snap._repr_html_()


def test_error_frames_become_the_masters_errors() -> None:
    with pytest.raises(PermissionDenied, match="admin"):
        parse_frame({"topic": "audit", "error": {"code": "forbidden", "message": "admin only"}})
    with pytest.raises(NotFoundError):
        parse_frame({"topic": "node:x", "error": {"code": "not_found", "message": "no node"}})
    with pytest.raises(ProtocolError, match="cannot read"):
        parse_frame(message("fleet", {"nodes": "many"}))
    with pytest.raises(ProtocolError, match="unknown topic"):
        parse_frame(message("weather", {}))


def test_a_session_waits_for_each_topics_first_answer_and_resubscribes() -> None:
    session = Session()
    assert json.loads(session.add("fleet") or "") == {"op": "subscribe", "topic": "fleet"}
    assert session.add("fleet") is None  # already there
    session.add("node:n1")
    assert session.waiting == {"fleet", "node:n1"}
    frame = session.read(json.dumps(message("node:n1", {"snapshot": True, "samples": []})))
    assert frame is not None and session.waiting == {"fleet"}
    assert session.read(json.dumps(message("nodes", {}))) is None  # not subscribed: dropped
    with pytest.raises(PermissionDenied):
        session.read(
            json.dumps({"topic": "fleet", "error": {"code": "forbidden", "message": "no"}})
        )
    assert session.topics == ["node:n1"]  # a refused topic is forgotten
    assert [json.loads(m)["topic"] for m in session.subscribe_all()] == ["node:n1"]
    assert session.waiting == {"node:n1"}
    with pytest.raises(ProtocolError):
        session.read("not json")


def test_topic_names_urls_and_handshakes() -> None:
    for good in ("fleet", "nodes", "node:abc", "system:s", "command:c", "batch:b", "audit"):
        assert check_topic(good) == good
    for bad in ("node", "node:", "nodez", "fleet:1", ""):
        with pytest.raises(ValidationError, match="unknown topic"):
            check_topic(bad)
    assert live_url("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080/api/v1/live"
    assert live_url("https://gdos.example.com/ops") == "wss://gdos.example.com/ops/api/v1/live"
    with pytest.raises(ValidationError):
        live_url("ftp://x")
    assert handshake_headers({"authorization": "Bearer t"}, []) == {"Authorization": "Bearer t"}
    assert handshake_headers({}, [("s", "1"), ("c", "2")]) == {"Cookie": "s=1; c=2"}
    assert ws_ssl_context("ws://x", True) is None
    loose = ws_ssl_context("wss://x", False)
    assert loose is not None and loose.verify_mode == ssl.CERT_NONE


def test_samples_are_yielded_once_in_order_across_a_fresh_snapshot() -> None:
    tracker = SampleTracker()

    def frame(*stamps: float, snapshot: bool = False) -> NodeSamplesFrame:
        data = {"snapshot": snapshot, "samples": [node_sample(t) for t in stamps]}
        found = parse_frame(message("node:n", data))
        assert isinstance(found, NodeSamplesFrame)
        return found

    assert [s.ts for s in tracker.feed(frame(2.0, 1.0, snapshot=True))] == [1.0, 2.0]
    assert [s.ts for s in tracker.feed(frame(3.0))] == [3.0]
    # A reconnect: the snapshot repeats what was seen, then holds what was missed.
    assert [s.ts for s in tracker.feed(frame(1.0, 2.0, 3.0, 4.0, 5.0, snapshot=True))] == [4.0, 5.0]


def result(
    node: str, state: NodeRunState, code: int | None = None, out: str = ""
) -> dict[str, Any]:
    data: dict[str, Any] = unstructure(
        NodeCommandResult(node_id=node, state=state, exit_code=code, stdout=out)
    )
    return data


def test_command_results_come_once_per_node_with_their_whole_output() -> None:
    tracker = CommandTracker()
    run = {
        "id": "r",
        "command": "x",
        "timeout": 5.0,
        "user": "u",
        "started_at": 1.0,
        "finished_at": None,
        "nodes": [result("a", NodeRunState.RUNNING, out="a1 "), result("b", NodeRunState.RUNNING)],
    }
    assert tracker.feed(parse_frame(message("command:r", {"snapshot": True, **run}))) == []  # type: ignore[arg-type]
    delta = {
        "output": [{"node_id": "a", "stream": "stdout", "data": "a2"}],
        "nodes": [result("a", NodeRunState.DONE, 0)],
        "finished_at": None,
    }
    [first] = tracker.feed(parse_frame(message("command:r", delta)))  # type: ignore[arg-type]
    assert (first.node_id, first.exit_code, first.stdout) == ("a", 0, "a1 a2")
    assert not tracker.done
    # The socket dropped meanwhile: the fresh snapshot has b ended, a again (not repeated).
    run["nodes"] = [
        result("a", NodeRunState.DONE, 0, "a1 a2"),
        result("b", NodeRunState.DONE, 1, "b!"),
    ]
    run["finished_at"] = 9.0
    [second] = tracker.feed(parse_frame(message("command:r", {"snapshot": True, **run})))  # type: ignore[arg-type]
    assert (second.node_id, second.exit_code, second.stdout) == ("b", 1, "b!")
    assert tracker.done


def test_batches_end_and_alerts_resync_after_a_gap() -> None:
    job = BatchJob(
        id="b",
        system_id="s",
        action="start",
        user="u",
        concurrency=1,
        wait_healthy=True,
        tier_timeout=1,
        min_running=1,
        state=BatchState.RUNNING,
        started_at=1,
        tiers=[],
        items=[],
    )
    batches = BatchTracker()
    assert batches.feed(BatchFrame(topic="batch:b", job=job)) == [job]
    assert batches.feed(BatchFrame(topic="batch:b", job=job, snapshot=True)) == []  # no change
    assert not batches.done
    ended = attrs.evolve(job, state=BatchState.DONE)
    assert batches.feed(BatchFrame(topic="batch:b", job=ended)) == [ended] and batches.done

    def alert(target: str, state: AlertPhase) -> ActiveAlert:
        return ActiveAlert(
            rule_id="r",
            rule_name="hot",
            target=target,
            target_name=target,
            severity="warning",
            state=state,
            value=1.0,
            since=datetime(2024, 1, 1, tzinfo=UTC),
        )

    tracker = AlertTracker()
    tracker.resync([alert("node:a", AlertPhase.PENDING)], quiet=True)
    assert tracker.feed(AlertsFrame(topic="alerts", snapshot=True)) is None
    change = {"change": "firing", "alert": unstructure(alert("node:a", AlertPhase.FIRING))}
    firing = parse_frame(message("alerts", {"firing": 1, "pending": 0, "changes": [change]}))
    assert [c.change for c in tracker.feed(firing) or []] == ["firing"]  # type: ignore[arg-type]
    # After a gap: a is gone (resolved meanwhile), b is new.
    changes = tracker.resync([alert("node:b", AlertPhase.PENDING)])
    assert sorted((c.change, c.alert.target) for c in changes) == [
        ("pending", "node:b"),
        ("resolved", "node:a"),
    ]


def test_a_field_a_newer_master_adds_is_ignored_not_fatal() -> None:
    """An older SDK keeps reading a newer master's frames and answers (a rolling upgrade)."""
    row = {"id": "n1", "hostname": "h", "alias": "", "status": "online", "added_later": 1}
    frame = parse_frame(message("nodes", {"snapshot": True, "rows": [row], "removed": []}))
    assert isinstance(frame, NodesFrame) and frame.rows[0].hostname == "h"
    # Wrong types stay errors, and requests stay strict.
    with pytest.raises(ProtocolError, match="cannot read"):
        parse_frame(message("nodes", {"rows": [{**row, "hostname": 5}]}))
    with pytest.raises(ValidationError, match="added_later"):
        structure({"name": "s", "added_later": 1}, SystemCreate)
    assert structure({"name": "s", "added_later": 1}, SystemCreate, extra_keys=True).name == "s"


def test_rollout_frames_as_the_master_sends_them_yield_each_newer_revision_once() -> None:
    """``rollout:<id>`` frames encoded by the master's own topic, read by the SDK's tracker:
    each newer revision once, in order; merged steps skip revisions; a fresh snapshot after a
    reconnect is yielded only when newer; the ended rollout ends the follow."""
    item = RolloutItem(instance_id="i1", node_id="n1", from_version="1.0.0")
    current = Rollout(
        id="r1",
        module_id="m",
        system_id="s",
        module="api",
        package="demo",
        from_version="1.0.0",
        to_version="2.0.0",
        kind="rollout",
        strategy=RolloutStrategy(max_parallel=2),
        state=RolloutState.RUNNING,
        user="u",
        started_at=1.0,
        items=[item],
        revision=1,
    )
    topic = RolloutTopic("rollout:r1", lambda: current)
    tick = View.__new__(View)  # what a hub's tick reads: nothing, for a rollout topic
    session = Session()
    session.add("rollout:r1")

    def receive(data: Any) -> RolloutFrame:
        read = session.read(live_frame("rollout:r1", data))
        assert isinstance(read, RolloutFrame)
        return read

    tracker = RolloutTracker()
    first = receive(topic.snapshot())
    assert first.snapshot and first.rollout == current  # the whole Rollout, typed
    assert tracker.feed(first) == [current] and not tracker.done
    assert topic.poll(tick) is None  # nothing changed: the master sends nothing
    # Two steps within one push interval: the master sends only the later one (revision 3).
    current = attrs.evolve(
        current, items=[attrs.evolve(item, state=StepState.VERIFYING)], revision=3
    )
    merged = receive(topic.poll(tick))
    assert not merged.snapshot and merged.rollout.items[0].state == StepState.VERIFYING
    assert [r.revision for r in tracker.feed(merged)] == [3]
    # A reconnect: the fresh snapshot holds nothing new, so nothing is yielded again ...
    session.subscribe_all()
    assert tracker.feed(receive(topic.snapshot())) == []
    # ... and a frame older than what was yielded (a slow socket's leftover) is dropped.
    assert tracker.feed(attrs.evolve(first, snapshot=False)) == []
    # The end: yielded (the final state), and the follow is done.
    current = attrs.evolve(
        current,
        state=RolloutState.DONE,
        items=[attrs.evolve(item, state=StepState.DONE)],
        finished_at=2.0,
        revision=4,
    )
    last = receive(topic.poll(tick))
    assert tracker.feed(last) == [current] and tracker.done
    assert check_topic("rollout:r1") == "rollout:r1"
    assert len(repr(last)) <= 120 and "<table" in last._repr_html_()
