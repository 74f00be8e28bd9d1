"""Serving the built web console: precompressed files, cache headers, history-mode fallback.

The console build (web/precompress.js) writes ``NAME.br`` and ``NAME.gz`` beside each
compressible file. A request gets the smallest variant its ``Accept-Encoding`` allows, with
``Content-Encoding`` set and ``Vary: Accept-Encoding`` on every answer that has variants, so
a shared cache keeps them apart. Nothing is compressed per request.

Cache headers: ``assets/*`` names carry a content hash, so they are cached for a year and
marked ``immutable``; every other file (``index.html`` above all, which names the current
assets) is ``no-cache``: the browser keeps it but asks again (a 304 when unchanged).

Example::

    app = Quart(__name__)
    register_console(app, STATIC_DIR)
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from pathlib import Path

from quart import Quart, Response, request, send_file
from werkzeug.http import parse_accept_header
from werkzeug.routing import PathConverter

__all__ = ["IMMUTABLE", "STATIC_DIR", "choose_encoding", "register_console"]

STATIC_DIR = Path(__file__).parent / "static"
IMMUTABLE = "public, max-age=31536000, immutable"

# Preferred first when the browser weighs them equally: brotli is the smaller.
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))

NOT_BUILT = (
    "<!doctype html><title>GDOS</title><p>The GDOS API is running, but this installation has"
    " no web console: it was built with GDOS_SKIP_CONSOLE_BUILD=1 or from a source tree whose"
    " console was not built. Install GDOS with <code>pip install gdos</code> (the package"
    " build needs Node.js and npm), or build it in a source tree with <code>nox -s web"
    "</code>. The REST API and the Python SDK work without it.</p>"
)


def choose_encoding(accept_encoding: str, available: Iterable[str]) -> str | None:
    """The content coding to answer with, of ``available``, or None for the plain file.

    Follows the header's q-values (``gzip;q=0`` refuses gzip, ``*`` stands for any coding
    not named); between equal weights brotli wins.

    Example::

        choose_encoding("gzip, deflate, br", {"br", "gzip"})  # "br"
        choose_encoding("gzip;q=1, br;q=0.5", {"br", "gzip"})  # "gzip"
    """
    accepted = parse_accept_header(accept_encoding)
    best: tuple[float, str] | None = None
    for coding, _ in ENCODINGS:
        if coding not in available:
            continue
        quality = accepted.quality(coding)
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, coding)
    return best[1] if best else None


async def _send(static_dir: Path, relative: str, cache_control: str) -> Response:
    path = static_dir / relative
    variants = {coding: path.with_name(path.name + suffix) for coding, suffix in ENCODINGS}
    variants = {coding: p for coding, p in variants.items() if p.is_file()}
    coding = choose_encoding(request.headers.get("Accept-Encoding", ""), variants)
    # The type of the file itself, not of its .br/.gz (Werkzeug adds charset=utf-8 to text).
    mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    response = await send_file(
        variants[coding] if coding else path, mimetype=mimetype, conditional=True
    )
    if coding:
        response.headers["Content-Encoding"] = coding
    if variants:
        response.vary.add("Accept-Encoding")
    # send_file adds an Expires from SEND_FILE_MAX_AGE_DEFAULT; one cache policy, stated once.
    response.headers.pop("Expires", None)
    response.headers["Cache-Control"] = cache_control
    return response


class _ConsolePath(PathConverter):
    """Any path but the API's: there a wrong method is a 405 and an unknown path a 404."""

    regex = r"(?!api(?:/|$))[^/].*?"


def register_console(app: Quart, static_dir: Path = STATIC_DIR) -> None:
    """Serve the console in ``static_dir`` at ``/``; unknown paths get ``index.html``."""
    root = static_dir.resolve()

    app.url_map.converters["console"] = _ConsolePath

    @app.route("/", defaults={"path": ""})
    @app.route("/<console:path>")
    async def console(path: str) -> Response:
        if not (root / "index.html").is_file():
            return Response(NOT_BUILT, content_type="text/html; charset=utf-8")
        candidate = (root / path).resolve()
        if path and candidate.is_file() and root in candidate.parents:
            relative = candidate.relative_to(root).as_posix()
            immutable = relative.startswith("assets/")  # content-hashed names
            return await _send(root, relative, IMMUTABLE if immutable else "no-cache")
        # History-mode routes (/nodes, /systems/3 ...) are the console's own.
        return await _send(root, "index.html", "no-cache")
