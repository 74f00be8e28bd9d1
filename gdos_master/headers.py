"""Security headers on every answer of the master: the console, the API and errors alike.

* ``Content-Security-Policy``: the console's pages may run only the master's own
  scripts (plus the inline theme script of ``index.html``, allowed by its hash),
  connect only to the master, and never be framed; every other answer (JSON,
  downloads) gets ``default-src 'none'``, so nothing it holds can run as a page.
* ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``.
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and
  ``Cross-Origin-Opener-Policy: same-origin``.
* ``Strict-Transport-Security`` when the master serves TLS itself.

Example::

    headers = SecurityHeaders.for_console(static_dir / "index.html", tls=True)
    headers.apply(response)
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import attrs
from quart import Response

__all__ = ["SecurityHeaders", "inline_script_hashes"]

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

    def apply(self, response: Response) -> Response:
        headers = response.headers
        page = (response.mimetype or "") == "text/html"
        headers.setdefault("Content-Security-Policy", self.console_csp if page else API_POLICY)
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if self.tls:
            headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}")
        return response
