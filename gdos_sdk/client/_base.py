"""What both clients share: request descriptions, response parsing, retries, signatures.

No I/O happens here. Each endpoint is a :class:`Call` (method, path, query, body and
how to parse the answer) built by :class:`~gdos_sdk.client._calls.Calls`;
:class:`~gdos_sdk.Client` sends it with a blocking ``httpx.Client`` and
:class:`~gdos_sdk.AsyncClient` with an ``httpx.AsyncClient``. So an endpoint is
described once and both clients stay in step.
"""

from __future__ import annotations

import enum
import html
import inspect
import random
import ssl
import typing
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import attrs
import httpx

from gdos_sdk.codec import structure
from gdos_sdk.display import ModelList
from gdos_sdk.errors import GdosError, TransportError, ValidationError, error_from_body
from gdos_sdk.models import Page

__all__ = [
    "API_PREFIX",
    "CSRF_HEADER",
    "Call",
    "RetryPolicy",
    "adopt_signature",
    "client_html",
    "client_repr",
    "console_url",
    "map_transport_error",
    "raise_for_error",
    "tls_verify",
]

T = TypeVar("T")

API_PREFIX = "/api/v1"
CSRF_HEADER = "X-CSRF-Token"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@attrs.frozen
class Call(Generic[T]):
    """One HTTP request and how to turn its response into a ``T``.

    ``safe`` marks a POST that changes nothing (it may be retried like a GET).
    ``root``: ``path`` is below the master's root, not below ``/api/v1`` (``/healthz``).
    ``answers``: error statuses that are an answer to parse, neither raised nor retried
    (``/healthz``'s 503 says what the master lost).
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    safe: bool = False
    root: bool = False
    answers: frozenset[int] = frozenset()

    def url(self, base_url: str) -> str:
        """What to hand the client's ``httpx`` client: the path, or a full URL if ``root``."""
        return base_url + self.path if self.root else self.path

    @property
    def mutating(self) -> bool:
        return self.method not in {"GET", "HEAD", "OPTIONS"}

    @property
    def retryable(self) -> bool:
        """Whether sending it twice does no harm (idempotent method or marked safe)."""
        return self.method in IDEMPOTENT_METHODS or self.safe


def tls_verify(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """``verify`` as httpx takes it: a CA bundle path becomes an SSL context."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def raise_for_error(response: httpx.Response) -> None:
    """Turn a master error response into the matching :class:`GdosError`."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    raise error_from_body(response.status_code, body)


def map_transport_error(exc: httpx.HTTPError) -> GdosError:
    """httpx's network errors become :class:`TransportError` (translated once, here)."""
    return TransportError(f"cannot reach the master: {exc}")


# --- retries --------------------------------------------------------------------------------

#: network failures after which an idempotent request is sent again: the connection could
#: not be made, or broke before an answer came. A read timeout is not among them: the
#: master may still be working on the request, and waiting again would double the wait.
RETRY_EXCEPTIONS: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.PoolTimeout,
)
RETRY_STATUSES = frozenset({502, 503})


@attrs.frozen
class RetryPolicy:
    """When and how long to wait before sending an idempotent request again (pure).

    ``retries`` extra attempts after the first; the waits double from ``backoff`` seconds
    up to ``maximum``, each jittered by ±20 %; a ``Retry-After`` header (seconds or a
    date) wins when it asks for longer, up to ``maximum``. Only requests that are safe to
    repeat (GET, HEAD, PUT, DELETE, or a POST marked ``safe``) are retried, after a
    connection failure or a 502/503 answer, except a 502 that carries a worker's own
    error (``worker_error``: repeating the command would only fail again).
    """

    retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    backoff: float = 0.25
    maximum: float = 5.0
    rng: random.Random = attrs.field(factory=random.Random, eq=False, repr=False)

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        base = min(self.maximum, self.backoff * 2 ** (attempt - 1))
        wait = base * self.rng.uniform(0.8, 1.2)
        asked = retry_after(response) if response is not None else None
        if asked is not None:
            wait = max(wait, min(asked, self.maximum))
        return float(min(self.maximum, wait))

    def retry_exception(self, call: Call[Any], exc: BaseException, attempt: int) -> bool:
        return attempt <= self.retries and call.retryable and isinstance(exc, RETRY_EXCEPTIONS)

    def retry_response(self, call: Call[Any], response: httpx.Response, attempt: int) -> bool:
        if attempt > self.retries or not call.retryable:
            return False
        if response.status_code not in RETRY_STATUSES:
            return False
        try:
            code = response.json().get("error", {}).get("code")
        except (ValueError, UnicodeDecodeError, AttributeError):
            code = None
        return bool(code != "worker_error")


def retry_after(response: httpx.Response) -> float | None:
    """A ``Retry-After`` header in seconds (it may be a number or an HTTP date)."""
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())


# --- parsing --------------------------------------------------------------------------------


def _model(cls: Any) -> Callable[[httpx.Response], Any]:
    """Parse a JSON answer into ``cls``; a list comes back as a :class:`ModelList`."""
    origin = typing.get_origin(cls)
    args = typing.get_args(cls)

    def parse(response: httpx.Response) -> Any:
        value = structure(response.json(), cls, what="response", extra_keys=True)
        if origin is list:
            return ModelList(value, args[0] if args else None)
        if origin is Page:
            return attrs.evolve(value, items=ModelList(value.items, args[0]))
        return value

    return parse


def _none(response: httpx.Response) -> None:
    return None


def _text(response: httpx.Response) -> str:
    return response.text


def _json(response: httpx.Response) -> Any:
    return response.json()


def _clean(**params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


def _choice(name: str, value: Any, allowed: Iterable[str]) -> str | None:
    """``value`` as a string if it is one of ``allowed`` (None and "" mean no filter).

    The same check and the same message as the master's (``ValidationError``, 422): an
    unknown filter value fails before the request, not as a silently empty list.
    """
    if value is None or value == "":
        return None
    text = str(value.value if isinstance(value, enum.Enum) else value)
    options = [str(a) for a in allowed]
    if text not in options:
        raise ValidationError(
            f"unknown {name} {text!r}; one of {', '.join(options)}",
            details=[{"path": f"query.{name}", "message": f"unknown {name}", "allowed": options}],
        )
    return text


def _seconds(value: float | datetime | str | None) -> float | None:
    """Unix seconds from a number, a datetime (naive means UTC) or an ISO 8601 string."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, str):
        try:
            return _seconds(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            raise ValidationError(
                f"{value!r} is not an ISO 8601 time",
                details=[{"path": "$", "message": "expected an ISO 8601 time or Unix seconds"}],
            ) from None
    return float(value)


# --- signatures -----------------------------------------------------------------------------


def adopt_signature(method: Callable[..., Any], factory: Callable[..., Any], owner: str) -> None:
    """Give ``method`` (a client's wrapper of ``factory``) the factory's real signature.

    The wrapper is ``(self, *args, **kwargs)``; ``help()``, ``inspect.signature``, IDEs
    and IPython's keyword completion read ``__signature__`` instead, so they show the
    factory's parameters, with the return type ``T`` of its ``Call[T]``.
    """
    signature = inspect.signature(factory, eval_str=True)
    returned = signature.return_annotation
    args = typing.get_args(returned)
    result = args[0] if typing.get_origin(returned) is Call and args else returned
    if result is type(None):
        result = None
    signature = signature.replace(return_annotation=result)
    method.__name__ = factory.__name__
    method.__qualname__ = f"{owner}.{factory.__name__}"
    method.__doc__ = factory.__doc__
    method.__signature__ = signature  # type: ignore[attr-defined]
    annotations = {
        name: p.annotation
        for name, p in signature.parameters.items()
        if p.annotation is not inspect.Parameter.empty
    }
    annotations["return"] = result
    method.__annotations__ = annotations


# --- how a client shows itself --------------------------------------------------------------


def console_url(base_url: str) -> str:
    """The web console of the master at ``base_url`` (it is served at the root)."""
    return base_url.rstrip("/") + "/"


def client_repr(kind: str, base_url: str, user: str | None) -> str:
    """``<Client http://127.0.0.1:8080 user=admin (admin) console=http://.../>``."""
    who = user or "?"
    return f"<{kind} {base_url.rstrip('/')} user={who} console={console_url(base_url)}>"


def client_html(kind: str, base_url: str, user: str | None) -> str:
    """The notebook view of a client: master, user and a link to the console."""
    url = html.escape(base_url.rstrip("/"))
    link = html.escape(console_url(base_url))
    rows = [
        ("Master", url),
        ("User", html.escape(user or "unknown (not logged in yet)")),
        ("Console", f'<a href="{link}" target="_blank">{link}</a>'),
    ]
    body = "".join(
        f'<tr><th style="text-align:left;padding:2px 8px">{k}</th>'
        f'<td style="text-align:left;padding:2px 8px">{v}</td></tr>'
        for k, v in rows
    )
    return f'<div><b>GDOS {html.escape(kind)}</b><table class="gdos">{body}</table></div>'


def user_label(me: Any) -> str:
    """``admin (admin)``: a user name and role from a :class:`~gdos_sdk.models.Me`."""
    return f"{me.user.username} ({me.user.role.value})"
