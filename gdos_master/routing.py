"""Declarative API routes: authentication, roles, body parsing, rendering and audit in one place.

Every REST endpoint is declared with :meth:`Api.route`, which records what the
OpenAPI document needs and wraps the handler so that it only sees an
authenticated :class:`Ctx` and a parsed body::

    @api.route("/nodes/<node_id>", "PATCH", role=Role.ADMIN, body=NodePatch,
               response=Node, audit="node.update", target="node:{node_id}",
               summary="Rename or relabel a node")
    async def patch_node(ctx: Ctx, node_id: str, body: NodePatch) -> Node:
        return ctx.master.nodes.patch(node_id, body)

Because the wrapper is the only way in, no route can forget its role check
or its audit entry. (The API's plain reads are answered below Quart by
gdos_master.fastlane, which applies the same declaration with the same functions:
:func:`authorise`, :func:`render`, :func:`error_response`, :func:`unexpected_error`.)

Query parameters are declared too (:class:`QueryParam`, with a type, a default and
a :class:`~gdos_sdk.constraints.Check`); the wrapper parses and checks them before
the handler runs, which reads them from ``ctx.query``. Every status an endpoint can
answer is known from its declaration: ``status`` and ``statuses`` for success, the
errors the wrapper itself raises (see :meth:`Endpoint.errors`), and ``raises`` for
those the handler's domain code raises. The OpenAPI document lists exactly those.

The wrapper runs on every API request, so it is kept cheap: the request object is read
once, the node or instance a path names joins the request's log lines (its request id is
added around the app, gdos_master.headers), and an empty query string is not parsed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from quart import Quart, Request, Response, has_request_context, request

from gdos_master.audit import record_audit
from gdos_master.auth import Principal, authenticate, check_csrf
from gdos_master.db import watch_writes, writes_sent
from gdos_master.query import PAGE, Instant, QueryParam
from gdos_master.security import redact
from gdos_sdk.codec import parse_json, structure, unstructure
from gdos_sdk.errors import (
    AuthError,
    BadRequestError,
    GdosError,
    NotFoundError,
    PasswordChangeRequired,
    PermissionDenied,
    TooLargeError,
    TransportError,
    UnsupportedMediaType,
    ValidationError,
)
from gdos_sdk.forwarded import TrustedProxies
from gdos_sdk.logformat import set_log_context
from gdos_sdk.models import Role

__all__ = [
    "PAGE",
    "Api",
    "Ctx",
    "Endpoint",
    "Instant",
    "QueryParam",
    "error_response",
    "json_response",
]

Handler = Callable[..., Awaitable[Any]]

log = logging.getLogger("gdos.master")


@attrs.frozen
class Endpoint:
    """One documented route."""

    path: str
    method: str
    handler: Handler
    summary: str
    tag: str
    role: Role | None
    body: type | None
    response: Any
    status: int
    audit: str | None
    target: str | None
    query: tuple[QueryParam, ...]
    raw_body: str | None  # content type of a streamed body (uploads)
    raw_response: str | None  # content type of a streamed response (downloads)
    agent: bool  # node credentials only (the worker's side of the API)
    # A rule beyond the role (which settings need an admin, what is write-only): the role
    # matrix of docs/security.md shows it beside the role.
    rule: str = ""
    statuses: tuple[tuple[int, str], ...] = ()  # other success statuses and when
    raises: tuple[type[GdosError], ...] = ()  # errors the handler's domain code raises

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    def errors(self) -> dict[int, list[type[GdosError]]]:
        """Every error this endpoint can answer, by status.

        The wrapper's own: 401/403 for an authenticated route; 404 for a path with
        parameters (no such object, or a value the router cannot place); 400, 415, 413
        and 422 for a JSON body; 413 and 422 for a streamed body; 422 for query parameters.
        Then ``raises``: what the handler's domain code raises on purpose.
        """
        found: list[type[GdosError]] = []
        if self.agent or self.role is not None:
            found += [AuthError, PermissionDenied]
        if self.role is not None:
            found.append(PasswordChangeRequired)
        if "<" in self.path:
            found.append(NotFoundError)
        if self.body is not None:
            found += [BadRequestError, UnsupportedMediaType, TooLargeError, ValidationError]
        if self.raw_body is not None:
            found += [TooLargeError, ValidationError]
        if self.query:
            found.append(ValidationError)
        by_status: dict[int, list[type[GdosError]]] = {}
        for error in (*found, *self.raises):
            listed = by_status.setdefault(error.status, [])
            if error not in listed:
                listed.append(error)
        return dict(sorted(by_status.items()))


@attrs.define
class Ctx:
    """What a handler gets: the master, who is calling, and audit hooks."""

    master: Any  # gdos_master.app.Master (Any to keep the import graph acyclic)
    principal: Principal | None
    ip: str
    target: str = ""
    audit_params: dict[str, Any] = attrs.field(factory=dict)
    query: dict[str, Any] = attrs.field(factory=dict)  # the declared query parameters, parsed

    @property
    def actor(self) -> Principal:
        assert self.principal is not None, "route declared without a role"
        return self.principal

    @property
    def is_admin(self) -> bool:
        """Whether the caller may choose admin-only settings (gdos_sdk.privileges)."""
        return self.actor.role.allows(Role.ADMIN)

    def page(self) -> tuple[int, int]:
        """``limit`` and ``offset`` of an endpoint that declares :data:`PAGE`."""
        return int(self.query["limit"]), int(self.query["offset"])


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status=status, content_type="application/json")


def error_response(exc: GdosError) -> Response:
    response = json_response(exc.to_body(), exc.status)
    response.headers.update(exc.http_headers())  # e.g. a 429's Retry-After
    return close_if_body_sent(response)


def unexpected_error(exc: Exception, method: str, path: str, master: Any = None) -> Response:
    """The answer to a request whose handler raised ``exc``, not a :class:`GdosError`.

    PostgreSQL away: 503 ``transport_error``, and ``master``'s cluster reports the outage
    at once (``/healthz`` agrees with the refusal). Lost before the request sent a commit
    or an autocommitted write: nothing was changed (``details.changed`` false; retry
    later). Lost after: the change may have been made, and the answer says so
    (``details.changed`` ``"unknown"``: look before retrying).
    Anything else is a bug: logged with its traceback, answered 500 ``internal_error``
    without details.
    """
    if database_lost(exc):
        if master is not None:
            master.cluster.note_db_lost(exc)
        log.error("database unreachable on %s %s: %s", method, path, exc)
        if writes_sent():
            return error_response(
                TransportError(
                    "the database was lost after this request sent it a change, which may"
                    " have been made: look before retrying",
                    details={"lost": ["database"], "changed": "unknown"},
                )
            )
        return error_response(
            TransportError(
                "the database is unreachable; nothing was changed, retry later",
                details={"lost": ["database"], "changed": False},
            )
        )
    log.exception("unhandled error on %s %s", method, path, exc_info=exc)
    return json_response(
        {"error": {"code": "internal_error", "message": "internal error; see the master log"}},
        500,
    )


def database_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL's driver reporting a lost or refused connection.

    Subclasses count: a server shutting down ends its sessions with ``AdminShutdown``
    (an ``OperationalError``), which the request running at that moment meets. psycopg is
    not imported for this (a master on SQLite may not have it).
    """
    return any(
        kind.__module__.startswith("psycopg")
        and kind.__name__ in {"OperationalError", "InterfaceError"}
        for kind in type(exc).__mro__
    )


def close_if_body_sent(response: Response) -> Response:
    """Mark an error answer to a request that carries a body ``Connection: close``.

    An error (401, 403, 404, 413 ...) is often decided before the body was read, and
    Hypercorn closes a keep-alive connection whose request body it has not seen the end
    of when the answer is done. Without this header the client would keep that
    connection for its next request and find it closed ("Server disconnected without
    sending a response"); with it, the client opens a new one.
    """
    if has_request_context() and (
        request.content_length or "chunked" in request.headers.get("Transfer-Encoding", "")
    ):
        response.headers["Connection"] = "close"
    return response


def client_ip(master: Any, req: Request | None = None) -> str:
    """The caller's address: the TCP peer, or what a trusted proxy says it saw (``req``:
    the current request, when at hand)."""
    found: Any = request if req is None else req
    proxies: TrustedProxies = master.proxies
    peer: str = found.remote_addr or ""
    if not proxies.networks:  # none trusted (the default): no header to read
        return peer
    return proxies.client(peer, found.headers.getlist("X-Forwarded-For"))


class Api:
    """A registry of endpoints that becomes Quart URL rules and an OpenAPI document."""

    def __init__(self, prefix: str = "/api/v1") -> None:
        self.prefix = prefix
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        path: str,
        method: str,
        *,
        summary: str,
        tag: str,
        role: Role | None,
        body: type | None = None,
        response: Any = None,
        status: int = 200,
        audit: str | None = None,
        target: str | None = None,
        query: tuple[QueryParam, ...] = (),
        raw_body: str | None = None,
        raw_response: str | None = None,
        agent: bool = False,
        rule: str = "",
        statuses: Mapping[int, str] | None = None,
        raises: tuple[type[GdosError], ...] = (),
    ) -> Callable[[Handler], Handler]:
        """Declare an endpoint; see the module docstring.

        ``rule`` states what the handler enforces beyond ``role`` (for the role matrix).
        ``statuses`` are success statuses other than ``status`` that the handler picks
        at run time (return ``(model, status)``), each with when it happens; ``raises``
        the :class:`GdosError` classes its domain code raises on purpose.
        """
        if method != "GET" and audit is None and role is not None and not agent:
            raise ValueError(f"{method} {path} mutates and must name an audit action")

        def decorate(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    path=path,
                    method=method,
                    handler=handler,
                    summary=summary,
                    tag=tag,
                    role=role,
                    body=body,
                    response=response,
                    status=status,
                    audit=audit,
                    target=target,
                    query=query,
                    raw_body=raw_body,
                    raw_response=raw_response,
                    agent=agent,
                    rule=rule,
                    statuses=tuple(sorted((statuses or {}).items())),
                    raises=raises,
                )
            )
            return handler

        return decorate

    def register(self, app: Quart) -> None:
        """Add every endpoint to ``app`` as a URL rule."""
        for endpoint in self.endpoints:
            app.add_url_rule(
                self.prefix + endpoint.path,
                endpoint=f"api.{endpoint.operation_id}",
                view_func=_make_view(endpoint, app),
                methods=[endpoint.method],
            )


def _make_view(endpoint: Endpoint, app: Quart) -> Handler:
    extensions = app.extensions
    query = endpoint.query
    target = endpoint.target
    agent = endpoint.agent
    role = endpoint.role
    names_ids = "node_id>" in endpoint.path or "instance_id>" in endpoint.path

    async def view(**kwargs: Any) -> Response:
        # The request object itself, read once: each read through Quart's ``request``
        # proxy looks up the context again (this wrapper runs on every API request).
        req = current_request()
        master = extensions["gdos"]
        watch_writes()  # a database lost mid-request: was a change sent? (unexpected_error)
        if names_ids:  # the node or instance the route names joins its log lines
            set_log_context(node_id=kwargs.get("node_id"), instance_id=kwargs.get("instance_id"))
        ctx = Ctx(master=master, principal=None, ip=client_ip(master, req))
        if target:
            ctx.target = target.format(**kwargs)
        params: dict[str, Any] = dict(kwargs)
        args: Mapping[str, str] = req.args if req.query_string else {}
        if args:
            params["query"] = dict(args)
        try:
            if agent:
                ctx.principal = await authenticate(master, req)
                if ctx.principal.kind != "node":
                    raise PermissionDenied("this endpoint is for workers (node credentials) only")
            elif role is not None:
                ctx.principal = await authenticate(master, req)
                authorise(ctx.principal, endpoint)
            if query:
                ctx.query = {q.name: q.read(args) for q in query}
            if endpoint.body is not None:
                raw = await _read_json()
                params["body"] = redact(raw)
                kwargs["body"] = structure(raw, endpoint.body)
            result = await endpoint.handler(ctx, **kwargs)
            response = render(result, endpoint.status)
        except GdosError as exc:
            response = error_response(exc)
            if endpoint.audit:
                _audit(master, ctx, endpoint, params, response.status_code, exc.message)
            return response
        if endpoint.audit:
            _audit(master, ctx, endpoint, params, response.status_code, "")
        return response

    view.__name__ = endpoint.operation_id
    return view


def current_request() -> Request:
    """The current HTTP request itself rather than Quart's proxy to it."""
    proxy: Any = request
    found: Request = proxy._get_current_object()
    return found


#: What a user whose password must be changed may still do (see :func:`check_password_fresh`).
BEFORE_PASSWORD_CHANGE = frozenset({"me", "logout", "change_password"})


def check_password_fresh(principal: Principal, what: str = "") -> None:
    """403 ``password_change_required`` for a user who must change their password first."""
    if principal.must_change_password and what not in BEFORE_PASSWORD_CHANGE:
        raise PasswordChangeRequired(
            f"{principal.username} must change the initial password first"
            " (POST /api/v1/auth/password); nothing else is allowed until then"
        )


def authorise(principal: Principal, endpoint: Endpoint) -> None:
    assert endpoint.role is not None
    if principal.kind == "node":
        raise PermissionDenied("node credentials are accepted only on agent endpoints")
    check_password_fresh(principal, endpoint.operation_id)
    if not principal.role.allows(endpoint.role):
        raise PermissionDenied(
            f"this action needs the {endpoint.role.value} role; "
            f"{principal.username} is {principal.role.value}"
        )
    if endpoint.method not in {"GET", "HEAD", "OPTIONS"}:
        check_csrf(principal)


#: The largest JSON request body any endpoint accepts. The app-wide MAX_CONTENT_LENGTH is
#: sized for package and backup uploads (which stream and enforce their own limits); a JSON
#: body is read into memory, so it gets a bound of its own.
MAX_JSON_BYTES = 8 * 1024 * 1024


async def _read_json() -> Any:
    # Only JSON is JSON: a form or text/plain body (what another site can make a browser
    # send without asking) is refused before anything is read or done.
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            "send the body as JSON with 'Content-Type: application/json'"
            f" (got {request.content_type or 'no Content-Type'})",
            details=[{"path": "header.Content-Type", "message": "expected application/json"}],
        )
    declared = request.content_length
    if declared is not None and declared > MAX_JSON_BYTES:
        raise TooLargeError(
            f"JSON request body is {declared} bytes; the limit is {MAX_JSON_BYTES} bytes",
            details=[{"path": "$", "message": "body too large"}],
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.body:
        size += len(chunk)
        if size > MAX_JSON_BYTES:
            raise TooLargeError(
                f"JSON request body is over the limit of {MAX_JSON_BYTES} bytes",
                details=[{"path": "$", "message": "body too large"}],
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise ValidationError(
            "request body is empty; send a JSON object",
            details=[{"path": "$", "message": "empty body"}],
        )
    try:
        return parse_json(raw, allow_nan=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(
            f"request body is not valid JSON: {exc}",
            details=[{"path": "$", "message": f"invalid JSON: {exc}"}],
        ) from exc


def render(result: Any, status: int) -> Response:
    if isinstance(result, Response):
        return result
    if result is None:
        return Response("", status=204)
    if isinstance(result, tuple):  # (model, status): e.g. 202 when a node is offline
        value, status = result
        return json_response(unstructure(value), status)
    return json_response(unstructure(result), status)


def _audit(
    master: Any, ctx: Ctx, endpoint: Endpoint, params: dict[str, Any], status: int, message: str
) -> None:
    params = {**params, **ctx.audit_params}
    record_audit(
        master.db,
        principal=ctx.principal,
        ip=ctx.ip,
        action=endpoint.audit or "",
        target=ctx.target,
        params=params,
        status=status,
        message=message,
    )
