"""Alert rules, active alerts, history, silences and webhook receivers."""

from __future__ import annotations

from gdos_master.api import api
from gdos_master.routing import PAGE, Ctx, Instant, QueryParam
from gdos_sdk.alerts import (
    ActiveAlert,
    AlertEvent,
    AlertRule,
    DeliveryResult,
    EventState,
    Receiver,
    ReceiverCreate,
    ReceiverPatch,
    Severity,
    Silence,
    SilenceCreate,
)
from gdos_sdk.errors import ConflictError
from gdos_sdk.models import Page, Role

T = "alerts"


@api.route(
    "/alerts/rules",
    "GET",
    summary="List alert rules",
    tag=T,
    role=Role.VIEWER,
    response=list[AlertRule],
)
async def list_rules(ctx: Ctx) -> list[AlertRule]:
    return list(ctx.master.alert_store.rules())


@api.route(
    "/alerts/rules",
    "POST",
    summary="Create an alert rule (the id is assigned)",
    tag=T,
    role=Role.OPERATOR,
    body=AlertRule,
    response=AlertRule,
    status=201,
    audit="alert_rule.create",
)
async def create_rule(ctx: Ctx, body: AlertRule) -> AlertRule:
    rule: AlertRule = ctx.master.alert_store.create_rule(body)
    ctx.target = f"alert_rule:{rule.id}"
    ctx.master.alerts.reload()
    return rule


@api.route(
    "/alerts/rules/<rule_id>",
    "GET",
    summary="Get an alert rule",
    tag=T,
    role=Role.VIEWER,
    response=AlertRule,
)
async def get_rule(ctx: Ctx, rule_id: str) -> AlertRule:
    rule: AlertRule = ctx.master.alert_store.rule(rule_id)
    return rule


@api.route(
    "/alerts/rules/<rule_id>",
    "PUT",
    summary="Replace an alert rule",
    tag=T,
    role=Role.OPERATOR,
    body=AlertRule,
    response=AlertRule,
    audit="alert_rule.update",
    target="alert_rule:{rule_id}",
)
async def replace_rule(ctx: Ctx, rule_id: str, body: AlertRule) -> AlertRule:
    rule: AlertRule = ctx.master.alert_store.replace_rule(rule_id, body)
    ctx.master.alerts.reload()
    return rule


@api.route(
    "/alerts/rules/<rule_id>",
    "DELETE",
    summary="Delete a rule; its open alerts are resolved",
    tag=T,
    role=Role.OPERATOR,
    status=204,
    audit="alert_rule.delete",
    target="alert_rule:{rule_id}",
)
async def delete_rule(ctx: Ctx, rule_id: str) -> None:
    ctx.master.alert_store.delete_rule(rule_id)
    ctx.master.alerts.forget_rule(rule_id)


@api.route(
    "/alerts/active",
    "GET",
    summary="Pending and firing alerts",
    tag=T,
    role=Role.VIEWER,
    response=list[ActiveAlert],
)
async def active_alerts(ctx: Ctx) -> list[ActiveAlert]:
    return list(ctx.master.alerts.active())


@api.route(
    "/alerts/events",
    "GET",
    summary="Alert history, newest first",
    tag=T,
    role=Role.VIEWER,
    response=Page[AlertEvent],
    query=(
        QueryParam("state", EventState, "only events in this state"),
        QueryParam("rule_id", str, "one rule's events"),
        QueryParam("target", str, "node:<id> or instance:<id>"),
        QueryParam("severity", Severity, "only events of this severity"),
        QueryParam("since", Instant, "started at or after (ISO 8601 or Unix seconds)"),
        QueryParam("until", Instant, "started before (ISO 8601 or Unix seconds)"),
        *PAGE,
    ),
)
async def alert_events(ctx: Ctx) -> Page[AlertEvent]:
    page: Page[AlertEvent] = ctx.master.alert_store.events(**ctx.query)
    return page


@api.route(
    "/alerts/silences",
    "GET",
    summary="Active and future silences",
    tag=T,
    role=Role.VIEWER,
    response=list[Silence],
    query=(QueryParam("expired", bool, "include expired silences", default=False),),
)
async def list_silences(ctx: Ctx) -> list[Silence]:
    return list(ctx.master.alert_store.silences(include_expired=ctx.query["expired"]))


@api.route(
    "/alerts/silences",
    "POST",
    summary="Silence notifications matching labels",
    tag=T,
    role=Role.OPERATOR,
    body=SilenceCreate,
    response=Silence,
    status=201,
    audit="silence.create",
)
async def create_silence(ctx: Ctx, body: SilenceCreate) -> Silence:
    silence: Silence = ctx.master.alert_store.create_silence(body, ctx.actor.label)
    ctx.target = f"silence:{silence.id}"
    ctx.master.alerts.reload()
    return silence


@api.route(
    "/alerts/silences/<silence_id>",
    "DELETE",
    summary="Expire a silence now",
    tag=T,
    role=Role.OPERATOR,
    response=Silence,
    audit="silence.expire",
    target="silence:{silence_id}",
)
async def expire_silence(ctx: Ctx, silence_id: str) -> Silence:
    silence: Silence = ctx.master.alert_store.expire_silence(silence_id)
    ctx.master.alerts.reload()
    return silence


@api.route(
    "/alerts/receivers",
    "GET",
    summary="Webhook receivers (secrets never shown; URLs show scheme, host and port only)",
    tag=T,
    role=Role.VIEWER,
    response=list[Receiver],
    rule="URLs are write-only: scheme, host and port shown",
)
async def list_receivers(ctx: Ctx) -> list[Receiver]:
    return list(ctx.master.alert_store.receivers())


@api.route(
    "/alerts/receivers",
    "POST",
    summary="Add a webhook receiver (loopback, link-local and metadata destinations are"
    " refused unless alerts.webhook_allow allows them)",
    tag=T,
    role=Role.ADMIN,
    body=ReceiverCreate,
    response=Receiver,
    status=201,
    audit="receiver.create",
    rule="destination policy: loopback, link-local, metadata refused unless alerts.webhook_allow",
    raises=(ConflictError,),
)
async def create_receiver(ctx: Ctx, body: ReceiverCreate) -> Receiver:
    await ctx.master.alerts.notifier.check_destination(body.url)
    receiver: Receiver = ctx.master.alert_store.create_receiver(body)
    ctx.target = f"receiver:{receiver.id}"
    return receiver


@api.route(
    "/alerts/receivers/<receiver_id>",
    "PATCH",
    summary="Change a receiver (a url left out, or sent as shown, is kept)",
    tag=T,
    role=Role.ADMIN,
    body=ReceiverPatch,
    response=Receiver,
    audit="receiver.update",
    target="receiver:{receiver_id}",
    rule="destination policy, as for create",
    raises=(ConflictError,),
)
async def patch_receiver(ctx: Ctx, receiver_id: str, body: ReceiverPatch) -> Receiver:
    if body.url is not None and not ctx.master.alert_store.keeps_url(receiver_id, body.url):
        await ctx.master.alerts.notifier.check_destination(body.url)
    receiver: Receiver = ctx.master.alert_store.patch_receiver(receiver_id, body)
    return receiver


@api.route(
    "/alerts/receivers/<receiver_id>",
    "DELETE",
    summary="Delete an unused receiver",
    tag=T,
    role=Role.ADMIN,
    status=204,
    audit="receiver.delete",
    target="receiver:{receiver_id}",
    raises=(ConflictError,),
)
async def delete_receiver(ctx: Ctx, receiver_id: str) -> None:
    ctx.master.alert_store.delete_receiver(receiver_id)


@api.route(
    "/alerts/receivers/<receiver_id>/test",
    "POST",
    summary="Send a test notification now and report the result",
    tag=T,
    role=Role.ADMIN,
    response=DeliveryResult,
    audit="receiver.test",
    target="receiver:{receiver_id}",
    rule="destination policy after DNS; one error for any receiver that gives no HTTP answer",
)
async def test_receiver(ctx: Ctx, receiver_id: str) -> DeliveryResult:
    payload = {
        "version": 1,
        "status": "test",
        "summary": "GDOS test notification",
        "sent_by": ctx.actor.label,
    }
    result: DeliveryResult = await ctx.master.alerts.notifier.deliver(
        receiver_id, payload, retries=False
    )
    return result
