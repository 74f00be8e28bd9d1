"""JSON and text log lines: fields, ids from the context and from extras, secrets masked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from gdos_sdk.logformat import configure_logging, log_context, set_log_context
from gdos_sdk.redaction import redact, scrub


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    try:
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_ids_that_apply(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    log = logging.getLogger("gdos.test")
    log.info("outside")
    with log_context(node_id="n-1"):
        log.info("on the node")
        with log_context(instance_id="i-9", node_id=None):
            log.warning("instance %s %s", "i-9", "failed\nbadly")
    log.debug("below the level")
    first, second, third = records(stream)
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["logger"] == "gdos.test" and first["level"] == "info"
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["node_id"] == "n-1" and "instance_id" not in second
    assert third == {**third, "level": "warning", "node_id": "n-1", "instance_id": "i-9"}
    assert third["message"] == "instance i-9 failed\nbadly"  # one line: JSON escapes it


def test_extras_and_exceptions_are_fields(stream: io.StringIO) -> None:
    configure_logging("debug", "json", stream=stream)
    log = logging.getLogger("gdos.test")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it broke", extra={"request_id": "r-1", "attempt": 3})
    (entry,) = records(stream)
    assert entry["request_id"] == "r-1" and entry["attempt"] == 3
    assert entry["level"] == "error"
    assert "ValueError: boom" in entry["exception"]


def test_secrets_never_reach_the_log(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    log = logging.getLogger("gdos.test")
    token = "gdos_" + "A1b2C3d4" * 5
    with log_context(session_id="s-1"):
        log.info(
            "header Authorization: Bearer %s, url /x?token=abc123&y=2, body %s",
            token,
            json.dumps({"password": "hunter22", "user": "bob"}),
            extra={"join_token": "jt-secret-1", "minio_secret_key": "mk-2", "user": "bob"},
        )
        try:
            raise RuntimeError(f"login failed for password=hunter22 with {token}")
        except RuntimeError:
            log.exception("failed")
    text = stream.getvalue()
    for secret in (token, "abc123", "hunter22", "jt-secret-1", "mk-2"):
        assert secret not in text
    first, second = records(stream)
    assert first["join_token"] == "***" and first["user"] == "bob"
    assert "Bearer ***" in first["message"] and "token=***&y=2" in first["message"]
    assert '"password": "***"' in first["message"]
    assert second["session_id"] == "s-1" and "password=***" in second["exception"]


def test_text_format_keeps_its_shape_and_adds_ids(stream: io.StringIO) -> None:
    configure_logging("info", "text", stream=stream)
    with log_context(node_id="n-1"):
        logging.getLogger("gdos.test").info("hello password=xyz")
    line = stream.getvalue().strip()
    assert " INFO gdos.test: hello password=*** [node_id=n-1]" in line


def test_tasks_inherit_the_ids_of_where_they_were_started(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=stream)
    log = logging.getLogger("gdos.test")

    async def main() -> None:
        async def child() -> None:
            log.info("from the task")

        set_log_context(request_id="r-7")
        with log_context(instance_id="i-1"):
            task = asyncio.get_running_loop().create_task(child())
        log.info("after the block")
        await task

    asyncio.run(main())
    after, child = records(stream)
    assert child["instance_id"] == "i-1" and child["request_id"] == "r-7"
    assert "instance_id" not in after and after["request_id"] == "r-7"


def test_configure_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="text, json"):
        configure_logging("info", "xml")


def test_redact_and_scrub() -> None:
    assert redact({"a": {"api_key": "k", "n": [{"cookie": "c"}]}, "token": ""}) == {
        "a": {"api_key": "***", "n": [{"cookie": "***"}]},
        "token": "",
    }
    assert scrub("tokens: 5 created; gdos_instance_id=3") == "tokens: 5 created; gdos_instance_id=3"
    assert scrub("node gdosn_" + "x" * 43 + " joined") == "node *** joined"
    assert scrub("{'secret_key': 'v'}") == "{'secret_key': '***'}"
