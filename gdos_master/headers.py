"""Headers on every answer of the master: the console, the API and errors alike.

Security headers:

* ``Content-Security-Policy``: the console's pages may run only the master's own
  scripts (plus the inline theme script of ``index.html``, allowed by its hash),
  connect only to the master, and never be framed; every other answer (JSON,
  downloads) gets ``default-src 'none'``, so nothing it holds can run as a page.
* ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``.
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and
  ``Cross-Origin-Opener-Policy: same-origin``.
* ``Strict-Transport-Security`` when the master serves TLS itself.

And ``X-Request-ID``: each HTTP request gets an id, echoed in its answer and added to every
log line the request causes (a caller's own id, a proxy's, is kept when it is a plain token).

:class:`AnswerHeaders` adds them as ASGI middleware, around the whole Quart app, so no
answer escapes them (an error page, a 404, a 500) and they cost a few list operations
per request rather than Quart hooks that edit a ``Headers`` object
(docs/benchmarks.md, REST).

Example::

    headers = SecurityHeaders.for_console(static_dir / "index.html", tls=True)
    app.asgi_app = AnswerHeaders(app.asgi_app, headers)
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

from gdos_sdk.logformat import log_context

__all__ = ["AnswerHeaders", "SecurityHeaders", "inline_script_hashes", "request_id"]

HSTS_SECONDS = 365 * 24 * 3600

_INLINE_SCRIPT = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>(?P<body>.*?)</script>", re.IGNORECASE | re.DOTALL
)

#: For anything that is not a console page: nothing may load, run or frame it.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def inline_script_hashes(html: str) -> list[str]:
    """CSP sources (``'sha256-...'``) for each inline ``<script>`` of ``html``."""
    found = []
    for match in _INLINE_SCRIPT.finditer(html):
        digest = hashlib.sha256(match.group("body").encode()).digest()
        found.append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return found


def console_policy(script_hashes: list[str]) -> str:
    """The CSP of the console's pages (checked in Chromium by the browser tests)."""
    scripts = " ".join(["'self'", *script_hashes])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            # Element Plus and xterm.js position elements with inline styles.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            # 'self' covers the live channel and terminal WebSockets (ws:/wss: to this host).
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


@attrs.frozen
class SecurityHeaders:
    """The headers one master adds to each answer."""

    console_csp: str
    tls: bool = False

    @classmethod
    def for_console(cls, index_html: Path, *, tls: bool) -> SecurityHeaders:
        """Headers for a master serving the console built at ``index_html`` (may be missing)."""
        try:
            hashes = inline_script_hashes(index_html.read_text(encoding="utf-8"))
        except OSError:
            hashes = []
        return cls(console_csp=console_policy(hashes), tls=tls)

    def pairs(self, *, page: bool) -> list[tuple[str, str]]:
        """The headers for a console page (``page``) or any other answer, in order."""
        found = [
            ("Content-Security-Policy", self.console_csp if page else API_POLICY),
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
        ]
        if self.tls:
            found.append(("Strict-Transport-Security", f"max-age={HSTS_SECONDS}"))
        return found


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

RawHeaders = list[tuple[bytes, bytes]]


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The id of a request with these (ASGI) headers: its ``X-Request-ID`` when that is a
    plain token of at most 64 characters, else 16 new random hex digits."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            given = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(given):
                return given
            break
    return os.urandom(8).hex()


class AnswerHeaders:
    """ASGI middleware: the security headers and ``X-Request-ID`` on every HTTP answer.

    A header the app set itself is kept (a security header is added only when missing);
    ``X-Request-ID`` is always this request's id. The id is in the log context
    (:func:`~gdos_sdk.logformat.log_context`) while the app handles the request.
    WebSocket connections and lifespan events pass through untouched.
    """

    def __init__(self, app: Any, security: SecurityHeaders) -> None:
        self.app = app
        self._page = [(k.lower().encode(), v.encode()) for k, v in security.pairs(page=True)]
        self._other = [(k.lower().encode(), v.encode()) for k, v in security.pairs(page=False)]

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope["headers"])

        async def stamped(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                headers = self.stamp(message.get("headers", ()), rid)
                message = {**message, "headers": headers}
            await send(message)

        with log_context(request_id=rid):
            await self.app(scope, receive, stamped)

    def stamp(self, given: Iterable[tuple[bytes, bytes]], rid: str) -> RawHeaders:
        """``given`` plus the missing security headers and this request's id."""
        headers: RawHeaders = []
        names = set()
        page = False
        for name, value in given:
            name = name.lower()
            if name == b"x-request-id":
                continue
            if name == b"content-type":
                page = value.split(b";", 1)[0].strip().lower() == b"text/html"
            names.add(name)
            headers.append((name, value))
        for name, value in self._page if page else self._other:
            if name not in names:
                headers.append((name, value))
        headers.append((b"x-request-id", rid.encode()))
        return headers
