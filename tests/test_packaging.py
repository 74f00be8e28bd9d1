"""``pip install gdos`` as a user gets it: sdist from a clean clone, wheel from that sdist.

The module builds once (``python -m build``: the sdist, then the wheel from the sdist, each in
an isolated build environment, as pip does), installs the wheel into a fresh venv, and checks
what a user would: the console at ``/`` (compressed), the commands, the metadata, and that
the version is one everywhere. It clones the repository's committed state: commit first.

It needs PyPI (pip's cache makes it quick) and the npm registry (``npm ci --prefer-offline``
reuses npm's cache). Select it with ``-m packaging``, leave it out with ``-m "not packaging"``.
"""

from __future__ import annotations

import email
import gzip
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import attrs
import httpx
import pytest

from gdos_sdk.testing import free_port, wait_until

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("gdos-master", "gdos-worker", "gdos-pack", "gdos")


@attrs.frozen
class Built:
    sdist: Path
    wheel: Path
    venv: Path
    version: str  # importlib.metadata.version("gdos") inside the venv

    def script(self, name: str) -> Path:
        return self.venv / "bin" / name


def _run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False
    )
    assert result.returncode == 0, (
        f"{argv} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def _build_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GDOS_SKIP_CONSOLE_BUILD", None)
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("the packaging test clones the repository: it needs git and a checkout")
    tmp = tmp_path_factory.mktemp("packaging")
    clone = tmp / "clone"
    _run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)])
    dist = tmp / "dist"
    # No flags: the sdist first, then the wheel built from that sdist (not from the clone).
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(clone)], env=_build_env())
    (sdist,) = dist.glob("gdos-*.tar.gz")
    (wheel,) = dist.glob("gdos-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)])
    version = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('gdos'))",
        ]
    ).strip()
    return Built(sdist=sdist, wheel=wheel, venv=venv, version=version)


def test_the_sdist_carries_the_console_sources_not_its_build(built: Built) -> None:
    with tarfile.open(built.sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    for needed in (
        "setup.py",
        "LICENSE",
        "web/package.json",
        "web/package-lock.json",
        "web/vite.config.js",
        "web/precompress.js",
        "web/index.html",
        "web/src/main.js",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("web/node_modules", "gdos_master/static"))]


def test_the_wheel_holds_the_built_console_precompressed(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as whl:
        names = set(whl.namelist())
        index = whl.read("gdos_master/static/index.html").decode()
        metadata = email.message_from_bytes(whl.read(f"gdos-{built.version}.dist-info/METADATA"))
    entry = re.search(r'<script[^>]+src="/(assets/[\w.-]+\.js)"', index)
    assert entry, index
    script = f"gdos_master/static/{entry[1]}"
    assert {script, script + ".gz", script + ".br"} <= names
    assert not [n for n in names if "node_modules" in n]
    assert metadata["License-Expression"] == "MIT"
    assert metadata["License-File"] == "LICENSE"
    assert "Programming Language :: Python :: 3.13" in metadata.get_all("Classifier")
    assert any(url.startswith("Source, https://") for url in metadata.get_all("Project-URL"))
    assert metadata["Version"] == built.version
    # The schema's migrations run at the master's start: the wheel carries them all.
    revisions = {
        f"gdos_master/migrations/versions/{p.name}"
        for p in (ROOT / "gdos_master" / "migrations" / "versions").glob("*.py")
    }
    assert revisions and revisions <= names
    assert {"gdos_master/migrations/env.py", "gdos_master/migrations/script.py.mako"} <= names
    assert "Provides-Extra: postgresql" in str(metadata)


def test_every_command_runs_and_tells_the_one_version(built: Built) -> None:
    for name in SCRIPTS:
        assert _run([str(built.script(name)), "--version"]).strip() == f"{name} {built.version}"
    # The help needs no docs folder (tests/test_cli.py checks it in full).
    assert "OPS_MASTER_SERVER_LISTEN" in _run([str(built.script("gdos-master")), "--help"])
    about = _run(
        [str(built.venv / "bin" / "python"), "-c", "import gdos_sdk; print(gdos_sdk.__version__)"]
    )
    assert about.strip() == built.version


@pytest.fixture
def master(built: Built, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "OPS_MASTER_AUTH_ADMIN_PASSWORD": "packaging-test-1"}
    argv = [str(built.script("gdos-master")), "-port", f"127.0.0.1:{port}"]
    argv += ["-data_dir", str(tmp_path / "data")]
    with open(tmp_path / "master.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is None and httpx.get(f"{url}/healthz", timeout=2).is_success,
            timeout=60,
            what="the installed master",
        )
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_installed_master_serves_the_console_compressed(built: Built, master: str) -> None:
    page = httpx.get(f"{master}/", headers={"Accept-Encoding": "identity"})
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-cache"
    match = re.search(r'src="(/assets/index-[\w-]+\.js)"', page.text)
    assert match, page.text[:500]
    script = match[1]
    plain = httpx.get(master + script, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "javascript" in plain.headers["Content-Type"]
    # Read the raw bytes: httpx would otherwise undo the gzip itself.
    with httpx.stream("GET", master + script, headers={"Accept-Encoding": "gzip"}) as gz:
        body = b"".join(gz.iter_raw())
        assert gz.headers["Content-Encoding"] == "gzip"
        assert gz.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert "Expires" not in gz.headers and gz.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == plain.content
    assert len(body) < len(plain.content) / 2
    br = httpx.head(master + script, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert br.headers["Content-Encoding"] == "br"
    health = httpx.get(f"{master}/api/v1/health").json()
    assert health["version"] == built.version


def _load_setup_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gdos_setup_py", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: defines the hook without running setup()
    return module


def test_a_build_without_npm_stops_with_a_clear_error(built: Built, tmp_path: Path) -> None:
    # The real backend on the real sdist, with a PATH that has no npm (nor node).
    with tarfile.open(built.sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (source,) = tmp_path.glob("gdos-*")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**_build_env(), "PATH": str(empty)}
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "out"), str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "needs npm" in output and "GDOS_SKIP_CONSOLE_BUILD=1" in output, output[-3000:]
    assert not list((tmp_path / "out").glob("*.whl"))


def test_the_skip_variable_is_the_only_way_round_a_missing_npm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    setup_py = _load_setup_py()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Exception, match="needs npm") as caught:
        setup_py.build_console()
    assert "Node.js" in str(caught.value)
    package = json.loads((ROOT / "web" / "package.json").read_text())
    assert package["engines"]["node"] in str(caught.value)
