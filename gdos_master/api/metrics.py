"""Metric queries over the in-memory series: ranges and latest values."""

from __future__ import annotations

import time

from quart import request

from gdos_master.api import api
from gdos_master.routing import Ctx, QueryParam, query_int
from gdos_sdk.errors import NotFoundError, ValidationError
from gdos_sdk.metrics.names import check_agg, check_metric
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


def _targets(ctx: Ctx, raw: list[str]) -> list[tuple[str, str]]:
    """``(target, name)`` for each ``target`` parameter; ``node:*`` is every node."""
    if not raw:
        raise ValidationError(
            "target is required: 'node:<id>', 'instance:<id>', 'node:*' or 'instance:*'",
            details=[{"path": "query.target", "message": "missing"}],
        )
    found: dict[str, str] = {}
    for target in raw:
        kind, _, ident = target.partition(":")
        if kind not in _TABLES or not ident:
            raise ValidationError(
                f"target {target!r} must be 'node:<id>', 'instance:<id>', 'node:*' or 'instance:*'",
                details=[{"path": "query.target", "message": "invalid target"}],
            )
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
        ),
        QueryParam("metric", str, "e.g. cpu, mem_percent, net_rx, disk_percent:/", required=True),
        QueryParam("start", float, "Unix seconds (default: end - 300)"),
        QueryParam("end", float, "Unix seconds (default: now)"),
        QueryParam("step", int, "seconds per point (default 1; >= 60 reads minute aggregates)"),
        QueryParam("agg", Agg, "how the samples within a step combine (default avg)"),
    ),
)
async def query_range(ctx: Ctx) -> MetricRange:
    targets = _targets(ctx, request.args.getlist("target"))
    metric = request.args.get("metric", "")
    if not metric:
        raise ValidationError(
            "metric is required", details=[{"path": "query.metric", "message": "missing"}]
        )
    for kind in sorted({t.partition(":")[0] for t, _ in targets}):
        check_metric(metric, kind)
    end = _float("end", time.time())
    start = _float("start", end - 300)
    step = query_int("step", 1, minimum=1, maximum=86400)
    agg = check_agg(request.args.get("agg") or "avg")
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
    query=(QueryParam("target", str, "node:<id> or instance:<id>", required=True),),
)
async def latest(ctx: Ctx) -> MetricLatest:
    raw = request.args.get("target", "")
    if raw.endswith(":*"):
        raise ValidationError(
            "latest takes one target, not a wildcard",
            details=[{"path": "query.target", "message": "one target"}],
        )
    target = _targets(ctx, [raw] if raw else [])[0][0]
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
