"""The ``gdos-pack`` command line: init, build, validate, inspect (and schema).

Options may come before or after the positional argument, and long options
take one dash or two (``-output x.zip`` == ``--output x.zip``), as the
original tool's flags did.

Exit codes: 0 success, 1 invalid input (bad manifest, unsafe archive, file
errors), 2 usage error. Expected errors print a message on stderr, never a
traceback. ``build`` and ``validate`` also warn on stderr when the manifest
names a file the package lacks (``args: ["main.py"]`` without ``main.py``,
see :mod:`gdos_sdk.contents`); with ``--strict`` a warning is an error (exit 1,
and ``build`` writes nothing).

Example::

    gdos-pack init ./my-service
    gdos-pack build ./my-service -o my-service-0.1.0.zip
    gdos-pack validate my-service-0.1.0.zip
    gdos-pack inspect my-service-0.1.0.zip --json
"""

from __future__ import annotations

import argparse
import json
import re
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from gdos_sdk.__about__ import __version__
from gdos_sdk.archive import ArchiveInfo, EntryInfo, build_archive, folder_entries, inspect_archive
from gdos_sdk.codec import suggest
from gdos_sdk.contents import check_contents
from gdos_sdk.errors import GdosError, ManifestError
from gdos_sdk.manifest import MANIFEST_FILENAME, Manifest, schema_text

__all__ = ["main"]

PROG = "gdos-pack"

# Long options that may also be written with a single dash.
_LONG_OPTIONS = frozenset({"output", "force", "json", "help", "strict", "version"})

# The service ``init`` writes next to service.json: it starts, logs, and stops on SIGTERM.
MAIN_PY = """\
\"\"\"A minimal GDOS service: replace the loop with your own work.\"\"\"

import os
import signal
import time

running = True


def stop(signum, frame):
    global running
    running = False  # GDOS sends the stop signal (service.json: stop_signal) to stop us


signal.signal(signal.SIGTERM, stop)
name = os.environ.get("GDOS_MODULE", "service")
print(f"{name} started (pid {os.getpid()})", flush=True)
while running:
    time.sleep(1)
print(f"{name} stopped", flush=True)
"""


class _UsageError(Exception):
    """A mistake in how the command was called (exit code 2)."""


def _normalise_argv(argv: Sequence[str]) -> list[str]:
    """``-output x`` -> ``--output x``; everything after ``--`` is left alone."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[i:])
            break
        name = arg[1:].split("=", 1)[0]
        if arg.startswith("-") and not arg.startswith("--") and name in _LONG_OPTIONS:
            arg = "-" + arg
        out.append(arg)
    return out


def _sanitise_name(raw: str) -> str:
    """A folder name turned into a valid package name (``My App!`` -> ``my-app``)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", raw.lower()).lstrip("._-")[:64].rstrip("-")
    return name or "service"


def _read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST_FILENAME
    if not path.is_file():
        raise GdosError(f"no {MANIFEST_FILENAME} in {folder}; run '{PROG} init {folder}' first")
    return Manifest.from_json(path.read_bytes())


# --- commands -----------------------------------------------------------------------------


def _cmd_init(ns: argparse.Namespace, out: TextIO) -> int:
    folder = Path(ns.dir)
    target = folder / MANIFEST_FILENAME
    if target.exists() and not ns.force:
        raise GdosError(f"{target} already exists; use --force to overwrite it")
    name = _sanitise_name(folder.resolve().name)
    manifest = Manifest(
        name=name,
        version="0.1.0",
        description=f"{name} service",
        entrypoint="python3",
        args=["main.py"],
    )
    # Keep the template short: unset optional fields are left out, defaults shown.
    data = {k: v for k, v in manifest.to_dict().items() if v is not None}
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {target}", file=out)
    main_py = folder / "main.py"
    if main_py.exists():  # never overwrite code, --force or not
        print(f"kept {main_py}", file=out)
    else:
        main_py.write_text(MAIN_PY, encoding="utf-8")
        print(f"wrote {main_py}", file=out)
    print(f"next: edit main.py, then '{PROG} build {folder} -o {name}-0.1.0.zip'", file=out)
    return 0


def _check_files(manifest: Manifest, entries: list[EntryInfo], strict: bool, err: TextIO) -> None:
    """Warn about files the manifest names and the package lacks; raise with ``strict``."""
    problems = check_contents(manifest, entries)
    if not problems:
        return
    if strict:
        raise ManifestError(
            "the package lacks files its service.json names: "
            + "; ".join(f"{p.field}: {p.message}" for p in problems),
            details=[{"path": p.field, "message": p.message} for p in problems],
        )
    for problem in problems:
        print(f"{PROG}: warning: {problem.field}: {problem.message}", file=err)


def _cmd_build(ns: argparse.Namespace, out: TextIO) -> int:
    folder = Path(ns.dir)
    if not folder.is_dir():
        raise _UsageError(f"{folder} is not a folder")
    manifest = _read_manifest(folder)
    _check_files(manifest, folder_entries(folder), ns.strict, sys.stderr)
    output = Path(ns.output or f"{manifest.name}-{manifest.version}.zip")
    sha256 = build_archive(folder, output)
    print(f"name:    {manifest.name}", file=out)
    print(f"version: {manifest.version}", file=out)
    print(f"file:    {output}", file=out)
    print(f"sha256:  {sha256}", file=out)
    print(f"size:    {output.stat().st_size} bytes", file=out)
    return 0


def _cmd_validate(ns: argparse.Namespace, out: TextIO) -> int:
    target = Path(ns.target)
    if target.is_dir():
        manifest = _read_manifest(target)
        _check_files(manifest, folder_entries(target), ns.strict, sys.stderr)
        print(f"ok: {manifest.name} {manifest.version} ({target / MANIFEST_FILENAME})", file=out)
        return 0
    if not target.exists():
        raise _UsageError(f"{target} does not exist")
    info = inspect_archive(target)
    _check_files(info.manifest, info.entries, ns.strict, sys.stderr)
    print(
        f"ok: {info.manifest.name} {info.manifest.version} ({len(info.entries)} entries,"
        f" {info.total_bytes} bytes, sha256 {info.sha256})",
        file=out,
    )
    return 0


def _info_json(info: ArchiveInfo) -> dict[str, Any]:
    return {
        "manifest": info.manifest.to_dict(),
        "entries": [attrs.asdict(e) for e in info.entries],
        "total_bytes": info.total_bytes,
        "sha256": info.sha256,
        "size": info.size,
    }


def _cmd_inspect(ns: argparse.Namespace, out: TextIO) -> int:
    target = Path(ns.zip)
    if not target.is_file():
        raise _UsageError(f"{target} is not a file")
    info = inspect_archive(target)
    if ns.json:
        print(json.dumps(_info_json(info), indent=2), file=out)
        return 0
    print("manifest:", file=out)
    print(json.dumps(info.manifest.to_dict(), indent=2), file=out)
    print("entries:", file=out)
    for e in info.entries:
        kind = stat.S_IFDIR if e.is_dir else stat.S_IFLNK if e.is_symlink else stat.S_IFREG
        name = e.name + "/" if e.is_dir else e.name
        if e.link_target is not None:
            name += f" -> {e.link_target}"
        print(f"  {stat.filemode(kind | e.mode)} {e.size:>12}  {name}", file=out)
    print(f"total:   {info.total_bytes} bytes in {len(info.entries)} entries", file=out)
    print(f"sha256:  {info.sha256}", file=out)
    print(f"size:    {info.size} bytes", file=out)
    return 0


def _cmd_schema(ns: argparse.Namespace, out: TextIO) -> int:
    out.write(schema_text())
    return 0


# --- plumbing -----------------------------------------------------------------------------


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and one parser per command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Create, build, validate and inspect GDOS service packages.",
        epilog="Long options also work with a single dash (-output, -force, -json, -strict)."
        " 'gdos-pack COMMAND --help' lists a command's options and their defaults;"
        " gdos-pack reads no environment variables or configuration files.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: list[tuple[str, str, Callable[[argparse.Namespace, TextIO], int]]] = [
        ("init", "write a service.json template and a minimal main.py into DIR", _cmd_init),
        ("build", "pack DIR into a deterministic zip", _cmd_build),
        ("validate", "check a package folder or zip", _cmd_validate),
        ("inspect", "show a zip's manifest, files and sha256", _cmd_inspect),
        ("schema", "print the JSON Schema of service.json", _cmd_schema),
    ]
    subs = {}
    for name, help_text, func in commands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        subs[name] = p
    subs["init"].add_argument("dir", metavar="DIR")
    subs["init"].add_argument(
        "--force", action="store_true", help="overwrite an existing service.json (default: refuse)"
    )
    subs["build"].add_argument("dir", metavar="DIR")
    subs["build"].add_argument(
        "-o", "--output", metavar="FILE", help="zip to write (default: NAME-VERSION.zip)"
    )
    subs["validate"].add_argument("target", metavar="DIR|ZIP")
    for name in ("build", "validate"):
        subs[name].add_argument(
            "--strict",
            action="store_true",
            help="fail (exit 1) when service.json names a file the package lacks",
        )
    subs["inspect"].add_argument("zip", metavar="ZIP")
    subs["inspect"].add_argument(
        "--json", action="store_true", help="machine-readable output (default: a readable listing)"
    )
    return parser, subs


def _misspelt(
    args: list[str], top: argparse.ArgumentParser, subs: dict[str, argparse.ArgumentParser]
) -> str | None:
    """A "did you mean" for an unknown command or option, before argparse sees them."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command is not None and command not in subs:
        hint = suggest(command, list(subs))
        tip = f"did you mean '{hint}'?" if hint else f"commands: {', '.join(subs)}"
        return f"unknown command {command!r}; {tip}"
    parser = subs[command] if command is not None else top
    known = [s for action in parser._actions for s in action.option_strings]
    for arg in args:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if arg.startswith("-") and len(arg) > 1 and not _is_known(name, known):
            hint = suggest(name, known)
            where = f" for '{command}'" if command else ""
            tip = f"; did you mean {hint}?" if hint else f"; options{where}: {', '.join(known)}"
            return f"unknown option {name!r}{where}{tip}"
    return None


def _is_known(name: str, known: list[str]) -> bool:
    # argparse accepts an unambiguous prefix of a long option (--out for --output).
    if name in known:
        return True
    return name.startswith("--") and len([k for k in known if k.startswith(name)]) == 1


def _report(exc: GdosError, err: TextIO) -> None:
    """One line per problem, ``path: message``, when the error lists them."""
    details = exc.details
    if isinstance(details, list) and details and all(isinstance(d, dict) for d in details):
        # The message repeats every problem on one line; keep only its head here.
        print(f"{PROG}: error: {exc.message.split(':', 1)[0]}:", file=err)
        for d in details:
            where = d.get("path") or d.get("entry") or "$"
            print(f"  {where}: {d.get('message', '')}", file=err)
    else:
        print(f"{PROG}: error: {exc.message}", file=err)


def main(argv: list[str] | None = None) -> int:
    """Run ``gdos-pack`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    Parameters:
        argv: the arguments after the program name.

    Example::

        raise SystemExit(main(["validate", "my-service"]))
    """
    args = _normalise_argv(sys.argv[1:] if argv is None else argv)
    parser, subs = _parser()
    problem = _misspelt(args, parser, subs)
    if problem is not None:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:  # argparse exits on --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    if ns.command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: a command is required", file=sys.stderr)
        return 2
    try:
        code: int = ns.func(ns, sys.stdout)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except GdosError as exc:
        _report(exc, sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return code
