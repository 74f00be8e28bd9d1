"""Which log files may be read, and the tailer that follows them across rotation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gdos_sdk.errors import NotFoundError, PermissionDenied
from gdos_sdk.logfiles import (
    LogCursor,
    log_sources,
    read_follow,
    resolve_log_file,
    search_file,
    tail_lines,
)


@pytest.fixture
def instance(tmp_path: Path) -> tuple[Path, Path]:
    app = tmp_path / "inst" / "app"
    logs = tmp_path / "inst" / "logs"
    (app / "logs").mkdir(parents=True)
    logs.mkdir()
    (logs / "console.log").write_text("hello\n")
    (logs / "console.log.1").write_text("older\n")
    (app / "logs" / "app.log").write_text("app line\n")
    return app, logs


def test_sources_are_console_files_and_declared_paths(instance: tuple[Path, Path]) -> None:
    app, logs = instance
    (logs / "other.txt").write_text("not a console file")
    sources = log_sources(app, logs, ["logs/app.log", "/var/log/declared.log"])
    assert list(sources) == [
        "console.log",
        "console.log.1",
        "logs/app.log",
        "/var/log/declared.log",
    ]
    assert sources["logs/app.log"].kind == "declared"
    assert resolve_log_file("console.log", sources) == (logs / "console.log").resolve()
    assert resolve_log_file("logs/app.log", sources) == (app / "logs" / "app.log").resolve()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../../etc/passwd", "path traversal"),
        ("logs/../../../etc/passwd", "path traversal"),
        ("..\\..\\windows\\win.ini", "path traversal"),
        ("/etc/passwd", "absolute path not declared"),
        ("C:\\Windows\\win.ini", "absolute path not declared"),
        ("main.py", "not a log file of this instance"),
        ("other.txt", "not a log file of this instance"),
    ],
)
def test_anything_else_is_refused_with_its_problem(
    instance: tuple[Path, Path], name: str, problem: str
) -> None:
    app, logs = instance
    sources = log_sources(app, logs, ["logs/app.log"])
    with pytest.raises(PermissionDenied) as caught:
        resolve_log_file(name, sources)
    assert problem in caught.value.message and repr(name) in caught.value.message
    assert caught.value.status == 403


def test_a_declared_symlink_out_of_the_package_is_refused(
    instance: tuple[Path, Path], tmp_path: Path
) -> None:
    app, logs = instance
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    (app / "logs" / "evil.log").symlink_to(secret)
    (logs / "console.log.2").symlink_to(secret)
    sources = log_sources(app, logs, ["logs/evil.log"])
    for name in ("logs/evil.log", "console.log.2"):
        with pytest.raises(PermissionDenied, match="symlink leads outside"):
            resolve_log_file(name, sources)


def test_a_declared_dotdot_entry_is_refused_even_when_declared(instance: tuple[Path, Path]) -> None:
    app, logs = instance
    sources = log_sources(app, logs, ["../logs/console.log"])
    with pytest.raises(PermissionDenied, match="path traversal"):
        resolve_log_file("../logs/console.log", sources)


def test_missing_and_non_regular_files(instance: tuple[Path, Path]) -> None:
    app, logs = instance
    (app / "adir").mkdir()
    sources = log_sources(app, logs, ["logs/later.log", "adir"])
    with pytest.raises(NotFoundError):
        resolve_log_file("logs/later.log", sources)
    with pytest.raises(PermissionDenied, match="not a regular file"):
        resolve_log_file("adir", sources)


def test_tail_returns_last_lines_and_a_cursor_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text("".join(f"line {i}\n" for i in range(5000)))
    text, cursor = tail_lines(path, 3)
    assert text == "line 4997\nline 4998\nline 4999\n"
    assert cursor.offset == path.stat().st_size and cursor.ino == path.stat().st_ino
    assert tail_lines(path, 0)[0] == ""
    text, _ = tail_lines(path, 100, limit=100)  # the byte limit wins
    assert len(text) <= 100 and text.endswith("line 4999\n")


def _append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def test_follow_reads_appends(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text("one\n")
    _, cursor = tail_lines(path, 10)
    chunk, got = read_follow(path, cursor)
    assert not got and chunk.text == ""
    _append(path, "two\nthree\n")
    chunk, got = read_follow(path, chunk.cursor)
    assert got and chunk.text == "two\nthree\n" and not chunk.rotated


def test_follow_across_rename_rotation_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("a1\n")
    _, cursor = tail_lines(path, 10)
    _append(path, "a2\n")  # written before rotation, not read yet
    path.rename(tmp_path / "app.log.1")
    path.write_text("b1\n")
    chunk, got = read_follow(path, cursor)
    assert got and chunk.rotated and chunk.text == "a2\nb1\n"
    assert chunk.cursor is not None and chunk.cursor.ino == path.stat().st_ino
    _append(path, "b2\n")
    chunk, _ = read_follow(path, chunk.cursor)
    assert chunk.text == "b2\n"


def test_follow_waits_on_the_old_file_until_the_new_one_exists(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("a1\n")
    _, cursor = tail_lines(path, 10)
    path.rename(tmp_path / "app.log.1")
    _append(tmp_path / "app.log.1", "a2\n")  # the writer still holds the old file
    chunk, got = read_follow(path, cursor)
    assert got and chunk.text == "a2\n" and chunk.cursor is not None
    assert chunk.cursor.ino == cursor.ino
    path.write_text("b1\n")
    chunk, _ = read_follow(path, chunk.cursor)
    assert chunk.text == "b1\n" and chunk.rotated


def test_follow_across_copytruncate(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    path.write_text("x" * 50 + "\n")
    _, cursor = tail_lines(path, 10)
    os.truncate(path, 0)
    _append(path, "after\n")
    chunk, got = read_follow(path, cursor)
    assert got and chunk.rotated and chunk.text == "after\n"


def test_follow_limits_a_read_to_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("")
    _, cursor = tail_lines(path, 10)
    _append(path, "".join(f"{i:04d}\n" for i in range(100)))
    chunk, _ = read_follow(path, cursor, limit=23)
    assert chunk.text == "0000\n0001\n0002\n0003\n" and chunk.more
    chunk, _ = read_follow(path, chunk.cursor, limit=10)
    assert chunk.text == "0004\n0005\n"


def test_follow_without_cursor_starts_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text("old\n")
    chunk, got = read_follow(path, None)
    assert not got and chunk.cursor == LogCursor(
        path.stat().st_dev, path.stat().st_ino, path.stat().st_size
    )


def test_search_keeps_the_last_matches_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text("ok\nERROR one\nfine\nerror two\nError three\n")
    found = search_file(path, "a.log", "error", limit=2)
    assert found.total == 3
    assert [(m.line, m.text) for m in found.matches] == [(4, "error two"), (5, "Error three")]


def test_a_followed_file_may_be_missing_for_a_moment(instance: tuple[Path, Path]) -> None:
    app, logs = instance
    sources = log_sources(app, logs, ["logs/app.log"])
    (app / "logs" / "app.log").rename(app / "logs" / "app.log.1")
    with pytest.raises(NotFoundError):
        resolve_log_file("logs/app.log", sources)
    path = resolve_log_file("logs/app.log", sources, must_exist=False)
    assert path == (app / "logs").resolve() / "app.log"
    with pytest.raises(PermissionDenied, match="path traversal"):
        resolve_log_file("../../etc/passwd", sources, must_exist=False)
