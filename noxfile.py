"""Every developer task is a session: ``nox -l`` lists them.

nox -s tests       the whole test suite (unit, e2e with real processes) on Python 3.11
nox -s unit        the unit tests on SQLite, Python 3.11, 3.12 and 3.13 (unit-3.12 for one)
nox -s packaging   only the packaging test (sdist from a clean clone, wheel, fresh venv)
nox -s lint        ruff check + format check; ESLint + Prettier over web/
nox -s typecheck   mypy --strict on the packages
nox -s typecheck_windows   the same for gdos_sdk + gdos_worker as on Windows
nox -s e2e         only the end-to-end tests
nox -s web         build the web console into gdos_master/static (npm ci + vite build)
nox -s browser     only the browser tests (Playwright + Debian's Chromium)
nox -s bench       benchmarks; prints figures next to raw baselines
nox -s fuzz        schemathesis against a real master + worker, every phase (tens of minutes)
nox -s up          master + one local worker on embedded defaults
nox -s docs        regenerate docs/api.md from the OpenAPI document
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PYTHON = "3.11"
PYTHONS = ["3.11", "3.12", "3.13"]
# The unit tests: everything but the end-to-end, browser and packaging tests.
UNIT_TESTS = [
    "tests/sdk",
    "tests/master",
    "tests/worker",
    "tests/pack",
    "tests/cli",
    "tests/storage",
    "tests/test_cli.py",
    "tests/test_project.py",
]


def _expose_pyenv_pythons() -> None:
    """Put pyenv's 3.11-3.13 interpreters on PATH as python3.X, for nox to find.

    pyenv's shims answer only for the versions made active (``pyenv global``); the
    interpreters themselves sit in $PYENV_ROOT/versions/3.X.Y. Links to the newest patch
    release of each go into .gdos/pythons, which goes first on PATH. Machines without pyenv
    keep their PATH (python3.X from the system, deadsnakes, uv ...).
    """
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not versions.is_dir():
        return
    links = Path(__file__).parent / ".gdos" / "pythons"
    for wanted in PYTHONS:
        found = sorted(
            (tuple(int(n) for n in m.groups()), path)
            for path in versions.glob(f"{wanted}.*/bin/python{wanted}")
            if (m := re.fullmatch(rf"{re.escape(wanted)}\.(\d+)", path.parents[1].name))
        )
        if not found:
            continue
        links.mkdir(parents=True, exist_ok=True)
        link = links / f"python{wanted}"
        target = found[-1][1]
        if not link.is_symlink() or link.readlink() != target:
            link.unlink(missing_ok=True)
            link.symlink_to(target)
    if links.is_dir():
        os.environ["PATH"] = f"{links}{os.pathsep}{os.environ.get('PATH', '')}"


_expose_pyenv_pythons()


def install(session: nox.Session, *extras: str) -> None:
    """Install the project (editable) with the given extras."""
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-q", "-e", spec)


WEB_INDEX = Path("gdos_master/static/index.html")


def build_web(session: nox.Session, *, force: bool = False) -> None:
    """Build the console into gdos_master/static (npm ci + vite build) unless it is built."""
    if WEB_INDEX.is_file() and not force:
        return
    if shutil.which("npm") is None:
        if force:
            session.error("npm is missing: install Node.js 20.19+ to build the web console")
        session.warn("npm is missing: the web console is not built (the API still works)")
        return
    with session.chdir("web"):
        session.run("npm", "ci", "--no-audit", "--no-fund", external=True)
        session.run("npm", "run", "build", external=True)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite (pass pytest options after --)."""
    install(session, "test")
    build_web(session)  # the browser tests need the built console
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session(python=PYTHONS)
def unit(session: nox.Session) -> None:
    """Run the unit tests (no e2e, browser or packaging) on each supported Python.

    On SQLite only: the tests that need PostgreSQL are skipped here with that reason and
    run in the ``tests`` session (docs/database.md).
    """
    install(session, "test")
    session.run("pytest", *UNIT_TESTS, "--db", "sqlite", *(session.posargs or ["-q"]))


@nox.session(python=PYTHON)
def packaging(session: nox.Session) -> None:
    """Build the sdist from a clean clone, the wheel from it, install and try it (slow)."""
    install(session, "test")
    session.run("pytest", "tests/test_packaging.py", *(session.posargs or ["-q"]))


@nox.session(python=PYTHON)
def e2e(session: nox.Session) -> None:
    """Run only the end-to-end tests (real master and worker processes)."""
    install(session, "test")
    session.run("pytest", "tests/e2e", *(session.posargs or ["-q"]))


@nox.session(python=PYTHON)
def web(session: nox.Session) -> None:
    """Build the web console into gdos_master/static (always rebuilds)."""
    build_web(session, force=True)


@nox.session(python=PYTHON)
def browser(session: nox.Session) -> None:
    """Run only the browser tests (Playwright driving /usr/bin/chromium)."""
    install(session, "test")
    build_web(session)
    session.run("pytest", "tests/browser", *(session.posargs or ["-q"]))


def node_packages(session: nox.Session) -> None:
    """Install web/'s npm packages (npm ci) unless node_modules matches package-lock.json."""
    if shutil.which("npm") is None:
        session.error("npm is missing: install Node.js 20.19+ to lint and build the web console")
    installed = Path("web/node_modules/.package-lock.json")  # written by every npm install
    lock = Path("web/package-lock.json")
    if installed.is_file() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    with session.chdir("web"):
        session.run("npm", "ci", "--no-audit", "--no-fund", external=True)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check; ESLint and Prettier --check over the web console."""
    session.install("-q", "ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    node_packages(session)
    with session.chdir("web"):
        session.run("npm", "run", "--silent", "lint", external=True)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on gdos_sdk, gdos_master, gdos_worker, gdos_pack and gdos_cli."""
    install(session, "typecheck")
    session.run("mypy", *session.posargs)


@nox.session(python=PYTHON)
def typecheck_windows(session: nox.Session) -> None:
    """mypy --strict as if on Windows (--platform win32): the Job Object executor's paths."""
    install(session, "typecheck")
    session.run("mypy", "--platform", "win32", "gdos_sdk", "gdos_worker", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks with raw baselines measured in the same run."""
    install(session, "test")
    session.run("python", "benchmarks/run.py", *session.posargs)
    # The console under a live 5,000-node fleet (the suite runs the same test with 1,000).
    build_web(session)
    session.run(
        "pytest",
        "tests/browser/test_performance.py",
        "-k",
        "live",
        "-s",
        "-p",
        "no:timeout",
        env={"GDOS_LIVE_NODES": "5000"},
    )


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Fuzz the whole API with schemathesis, hard (the suite runs a bounded version).

    A real master and worker are seeded with real ids; every operation of the OpenAPI
    document is fuzzed as admin and as viewer through every phase (examples, coverage,
    fuzzing, stateful along the document's links). Reports and the schemathesis.toml to
    replay them with land in .gdos/fuzz (``GDOS_FUZZ_OUT`` to choose). See docs/testing.md.
    """
    install(session, "test")
    out = Path(".gdos/fuzz").absolute()
    session.run(
        "pytest",
        "tests/fuzz",
        *(session.posargs or ["-q", "-p", "no:cacheprovider"]),
        env={"GDOS_FUZZ_PROFILE": "full", "GDOS_FUZZ_OUT": str(out)},
    )


@nox.session(python=PYTHON)
def up(session: nox.Session) -> None:
    """Start a master and one local worker (data under .gdos/up); Ctrl-C stops both."""
    install(session)
    build_web(session)
    session.run("python", "tools/up.py", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Regenerate docs/api.md and the option tables of docs/configuration.md."""
    install(session)
    session.run("python", "tools/gen_docs.py")
