"""Metric queries over the in-memory series: ranges and latest values."""

from __future__ import annotations

import time

from quart import request

from gdos_master.api import api
from gdos_master.routing import Ctx, QueryParam, query_int
from gdos_sdk.errors import NotFoundError, ValidationError
from gdos_sdk.models import IngestStatus, MetricLatest, MetricRange, MetricValue, Role

T = "metrics"
AGGS = ("avg", "min", "max", "last")
MAX_POINTS = 11_000


def _target(ctx: Ctx) -> str:
    target = request.args.get("target", "")
    kind, _, ident = target.partition(":")
    table = {"node": "nodes", "instance": "instances"}.get(kind)
    if table is None or not ident:
        raise ValidationError(
            "target must be 'node:<id>' or 'instance:<id>'",
            details=[{"path": "query.target", "message": "invalid target"}],
        )
    if not ctx.master.db.one(f"SELECT 1 FROM {table} WHERE id = ?", (ident,)):  # noqa: S608
        raise NotFoundError(f"no {kind} with id {ident!r}")
    return target


def _float(name: str, default: float) -> float:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValidationError(
            f"query parameter {name!r} must be Unix seconds",
            details=[{"path": f"query.{name}", "message": "expected a number"}],
        ) from None


@api.route(
    "/metrics/query",
    "GET",
    summary="A metric of a node or instance over a time range",
    tag=T,
    role=Role.VIEWER,
    response=MetricRange,
    query=(
        QueryParam("target", str, "node:<id> or instance:<id>", required=True),
        QueryParam("metric", str, "e.g. cpu, mem_percent, net_rx, disk_percent:/", required=True),
        QueryParam("start", float, "Unix seconds (default: end - 300)"),
        QueryParam("end", float, "Unix seconds (default: now)"),
        QueryParam("step", int, "seconds per point (default 1; >= 60 reads minute aggregates)"),
        QueryParam("agg", str, "avg, min, max or last within each step (default avg)"),
    ),
)
async def query_range(ctx: Ctx) -> MetricRange:
    target = _target(ctx)
    metric = request.args.get("metric", "")
    if not metric:
        raise ValidationError(
            "metric is required", details=[{"path": "query.metric", "message": "missing"}]
        )
    end = _float("end", time.time())
    start = _float("start", end - 300)
    step = query_int("step", 1, minimum=1, maximum=86400)
    agg = request.args.get("agg", "avg")
    if agg not in AGGS:
        raise ValidationError(
            f"agg must be one of {', '.join(AGGS)}",
            details=[{"path": "query.agg", "message": "invalid"}],
        )
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
    query=(QueryParam("target", str, "node:<id> or instance:<id>", required=True),),
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
