"""Metric queries over the in-memory series: ranges and latest values."""

from __future__ import annotations

import time

from gdos_master.api import api
from gdos_master.routing import Ctx, QueryParam
from gdos_sdk.constraints import Check
from gdos_sdk.errors import NotFoundError, ValidationError
from gdos_sdk.metrics.names import INSTANCE_METRICS, NODE_METRICS, check_metric
from gdos_sdk.metrics.series import Agg
from gdos_sdk.models import (
    IngestStatus,
    MetricLatest,
    MetricRange,
    MetricSeries,
    MetricValue,
    Role,
)

T = "metrics"
MAX_POINTS = 11_000  # per series
MAX_TOTAL_POINTS = 2_000_000  # per answer: 100 nodes x 1 h of 1 s samples is 360,000
_TABLES = {"node": "nodes", "instance": "instances"}
_TARGET_CHECK = Check(
    pattern=r"^(?:node|instance):.", hint="node:<id>, instance:<id>, node:* or instance:*"
)


def _targets(ctx: Ctx, raw: list[str]) -> list[tuple[str, str]]:
    """``(target, name)`` for each ``target`` parameter; ``node:*`` is every node."""
    found: dict[str, str] = {}
    for target in raw:
        kind, _, ident = target.partition(":")
        rows = _names(ctx, kind, None if ident == "*" else ident)
        if not rows and ident != "*":
            raise NotFoundError(f"no {kind} with id {ident!r}")
        found.update((f"{kind}:{row_id}", name) for row_id, name in rows)
    return list(found.items())


def _names(ctx: Ctx, kind: str, ident: str | None) -> list[tuple[str, str]]:
    where, args = ("", ()) if ident is None else (" WHERE n.id = ?", (ident,))
    if kind == "node":
        sql = "SELECT n.id, COALESCE(NULLIF(n.alias, ''), n.hostname) FROM nodes n"
    else:
        sql = "SELECT n.id, m.name FROM instances n JOIN modules m ON m.id = n.module_id"
    rows = ctx.master.db.all(sql + where + " ORDER BY n.id", args)
    return [(row[0], row[1]) for row in rows]


@api.route(
    "/metrics/query",
    "GET",
    summary="A metric of nodes or instances over a time range, a series per target",
    tag=T,
    role=Role.VIEWER,
    response=MetricRange,
    query=(
        QueryParam(
            "target",
            list[str],
            "node:<id> or instance:<id>, repeatable; node:* or instance:* for all",
            required=True,
            check=_TARGET_CHECK,
        ),
        QueryParam(
            "metric",
            str,
            "node: " + ", ".join(NODE_METRICS) + ", disk_percent:<mount>, net_rx:<if>,"
            " net_tx:<if>; instance: " + ", ".join(INSTANCE_METRICS),
            required=True,
        ),
        QueryParam("start", float, "Unix seconds (default: end - 300)"),
        QueryParam("end", float, "Unix seconds (default: now)"),
        QueryParam(
            "step",
            int,
            "seconds per point (>= 60 reads minute aggregates)",
            default=1,
            check=Check(minimum=1, maximum=86400),
        ),
        QueryParam("agg", Agg, "how each step's samples are combined", default="avg"),
    ),
    raises=(NotFoundError,),
)
async def query_range(ctx: Ctx) -> MetricRange:
    targets = _targets(ctx, ctx.query["target"])
    metric: str = ctx.query["metric"]
    for kind in sorted({t.partition(":")[0] for t, _ in targets}):
        check_metric(metric, kind)
    end: float = time.time() if ctx.query["end"] is None else ctx.query["end"]
    start: float = end - 300 if ctx.query["start"] is None else ctx.query["start"]
    step: int = ctx.query["step"]
    agg: Agg = ctx.query["agg"]
    if end <= start:
        raise ValidationError(
            "end must be after start", details=[{"path": "query.end", "message": "not after start"}]
        )
    if (end - start) / step > MAX_POINTS:
        raise ValidationError(
            f"too many points: at most {MAX_POINTS} per series; raise step",
            details=[{"path": "query.step", "message": "too small for the range"}],
        )
    if (end - start) / step * len(targets) > MAX_TOTAL_POINTS:
        raise ValidationError(
            f"too many points: at most {MAX_TOTAL_POINTS} in one answer; raise step or"
            " ask for fewer targets",
            details=[{"path": "query.step", "message": "too small for the range and targets"}],
        )
    store = ctx.master.fleet.store
    series = []
    for target, name in targets:
        first, size, values = store.grid(target, metric, start=start, end=end, step=step, agg=agg)
        series.append(MetricSeries(target=target, name=name, start=first, step=size, values=values))
    return MetricRange(metric=metric, start=start, end=end, step=step, agg=agg, series=series)


@api.route(
    "/metrics/latest",
    "GET",
    summary="The newest value of every metric of a target",
    tag=T,
    role=Role.VIEWER,
    response=MetricLatest,
    query=(
        QueryParam(
            "target",
            str,
            "node:<id> or instance:<id>",
            required=True,
            check=Check(pattern=r"^(?:node|instance):[^*]", hint="node:<id> or instance:<id>"),
        ),
    ),
    raises=(NotFoundError,),
)
async def latest(ctx: Ctx) -> MetricLatest:
    target = _targets(ctx, [ctx.query["target"]])[0][0]
    values = ctx.master.fleet.store.latest(target)
    return MetricLatest(
        target=target,
        values={
            name: MetricValue(ts=ts, value=value) for name, (ts, value) in sorted(values.items())
        },
    )


@api.route(
    "/metrics/ingest",
    "GET",
    summary="The master's ingest counters and lag",
    tag=T,
    role=Role.VIEWER,
    response=IngestStatus,
)
async def ingest(ctx: Ctx) -> IngestStatus:
    fleet = ctx.master.fleet
    stats = fleet.stats
    return IngestStatus(
        heartbeats=stats.heartbeats,
        node_samples=stats.node_samples,
        instance_samples=stats.instance_samples,
        last_lag=stats.last_lag,
        recent_max_lag=stats.recent_max_lag,
        loop_lag_max=stats.loop_lag.value,
        nodes_online=fleet.online_count(),
        series=fleet.store.series_count(),
        disconnects=stats.disconnects,
        gc_full_collections=ctx.master.heap.full_collections,
        gc_last_full_pause=round(ctx.master.heap.last_full_pause, 4),
        gc_frozen_objects=ctx.master.heap.frozen(),
    )
