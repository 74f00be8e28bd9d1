"""Serving the web console: precompressed variants, Vary, cache headers, history fallback."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from quart import Quart

from gdos_master.console import IMMUTABLE, choose_encoding, register_console

pytestmark = pytest.mark.anyio

SCRIPT = b"export const answer = 42;\n" * 200
BROTLI = b"\x8b\x7f\x00pretend-brotli-bytes"  # served as stored: never decoded by the master


@pytest.fixture
def static(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>GDOS</title>")
    (root / "favicon.svg").write_text("<svg/>")
    (root / "assets" / "index-AbC123.js").write_bytes(SCRIPT)
    (root / "assets" / "index-AbC123.js.gz").write_bytes(gzip.compress(SCRIPT, mtime=0))
    (root / "assets" / "index-AbC123.js.br").write_bytes(BROTLI)
    (root / "assets" / "only-gz-Zz9.css").write_bytes(b"body{}" * 300)
    (root / "assets" / "only-gz-Zz9.css.gz").write_bytes(gzip.compress(b"body{}" * 300))
    (tmp_path / "secret.txt").write_text("outside the console")
    return root


@pytest.fixture
def app(static: Path) -> Quart:
    application = Quart(__name__)
    register_console(application, static)
    return application


@pytest.mark.parametrize(
    ("header", "available", "expected"),
    [
        ("gzip, deflate, br, zstd", {"br", "gzip"}, "br"),
        ("gzip, deflate", {"br", "gzip"}, "gzip"),
        ("gzip;q=1.0, br;q=0.5", {"br", "gzip"}, "gzip"),
        ("br;q=0, gzip", {"br", "gzip"}, "gzip"),
        ("*", {"gzip"}, "gzip"),
        ("*, gzip;q=0", {"br", "gzip"}, "br"),
        ("identity", {"br", "gzip"}, None),
        ("", {"br", "gzip"}, None),
        ("br", set(), None),
    ],
)
def test_choose_encoding_follows_q_values(
    header: str, available: set[str], expected: str | None
) -> None:
    assert choose_encoding(header, available) == expected


async def test_a_hashed_asset_comes_brotli_or_gzip_as_the_browser_accepts(app: Quart) -> None:
    client = app.test_client()
    url = "/assets/index-AbC123.js"

    br = await client.get(url, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert br.status_code == 200
    assert br.headers["Content-Encoding"] == "br"
    assert await br.get_data() == BROTLI

    gz = await client.get(url, headers={"Accept-Encoding": "gzip"})
    assert gz.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await gz.get_data()) == SCRIPT
    assert int(gz.headers["Content-Length"]) < len(SCRIPT) / 10

    plain = await client.get(url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert await plain.get_data() == SCRIPT

    for response in (br, gz, plain):
        assert response.headers["Vary"] == "Accept-Encoding"
        assert response.headers["Cache-Control"] == IMMUTABLE
        assert "Expires" not in response.headers
        assert response.mimetype in {"text/javascript", "application/javascript"}
    # Each variant has its own validator, so a cache never mixes them up.
    assert len({r.headers["ETag"] for r in (br, gz, plain)}) == 3


async def test_a_file_with_only_a_gzip_variant_falls_back_to_it(app: Quart) -> None:
    response = await app.test_client().get(
        "/assets/only-gz-Zz9.css", headers={"Accept-Encoding": "br, gzip"}
    )
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.mimetype == "text/css"


async def test_index_and_history_routes_are_no_cache(app: Quart) -> None:
    client = app.test_client()
    for url in ("/", "/nodes", "/systems/3/modules", "/index.html"):
        response = await client.get(url, headers={"Accept-Encoding": "gzip, br"})
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"] == "no-cache", url
        assert "Expires" not in response.headers
        assert "Content-Encoding" not in response.headers  # no variant: small file
        assert b"<title>GDOS</title>" in await response.get_data()
    favicon = await client.get("/favicon.svg")
    assert favicon.headers["Cache-Control"] == "no-cache"  # not content-hashed
    assert "Vary" not in favicon.headers


async def test_a_revalidation_of_an_unchanged_asset_is_a_304(app: Quart) -> None:
    client = app.test_client()
    headers = {"Accept-Encoding": "gzip"}
    first = await client.get("/assets/index-AbC123.js", headers=headers)
    again = await client.get(
        "/assets/index-AbC123.js", headers={**headers, "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304


async def test_no_path_leaves_the_console_folder(app: Quart) -> None:
    client = app.test_client()
    response = await client.get("/../secret.txt")
    assert b"outside the console" not in await response.get_data()
    api = await client.get("/api/v1/nope")
    # API paths are never the console's: the app's own 404 (JSON in the master) answers.
    assert api.status_code == 404
    assert b"<title>GDOS" not in await api.get_data()


async def test_an_installation_without_console_says_how_to_get_one(tmp_path: Path) -> None:
    application = Quart(__name__)
    register_console(application, tmp_path / "empty")
    response = await application.test_client().get("/")
    text = (await response.get_data()).decode()
    assert "no web console" in text and "Node.js" in text and "GDOS_SKIP_CONSOLE_BUILD" in text
