"""Metric queries over the in-memory series: ranges and latest values."""

from __future__ import annotations

import time

from gdos_master.api import api
from gdos_master.routing import Ctx, QueryParam
from gdos_sdk.constraints import Check
from gdos_sdk.errors import NotFoundError, ValidationError
from gdos_sdk.metrics.series import Agg
from gdos_sdk.models import IngestStatus, MetricLatest, MetricRange, MetricValue, Role

T = "metrics"
MAX_POINTS = 11_000

_TARGET = QueryParam(
    "target",
    str,
    "node:<id> or instance:<id>",
    required=True,
    check=Check(pattern=r"^(?:node|instance):.", hint="node:<id> or instance:<id>"),
)


def _target(ctx: Ctx) -> str:
    target: str = ctx.query["target"]
    kind, _, ident = target.partition(":")
    table = {"node": "nodes", "instance": "instances"}[kind]
    if not ctx.master.db.one(f"SELECT 1 FROM {table} WHERE id = ?", (ident,)):  # noqa: S608
        raise NotFoundError(f"no {kind} with id {ident!r}")
    return target


@api.route(
    "/metrics/query",
    "GET",
    summary="A metric of a node or instance over a time range",
    tag=T,
    role=Role.VIEWER,
    response=MetricRange,
    query=(
        _TARGET,
        QueryParam("metric", str, "e.g. cpu, mem_percent, net_rx, disk_percent:/", required=True),
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
    target = _target(ctx)
    metric: str = ctx.query["metric"]
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
            f"too many points: at most {MAX_POINTS}; raise step",
            details=[{"path": "query.step", "message": "too small for the range"}],
        )
    points = ctx.master.fleet.store.query(target, metric, start=start, end=end, step=step, agg=agg)
    return MetricRange(
        target=target, metric=metric, start=start, end=end, step=step, agg=agg, points=points
    )


@api.route(
    "/metrics/latest",
    "GET",
    summary="The newest value of every metric of a target",
    tag=T,
    role=Role.VIEWER,
    response=MetricLatest,
    query=(_TARGET,),
    raises=(NotFoundError,),
)
async def latest(ctx: Ctx) -> MetricLatest:
    target = _target(ctx)
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
