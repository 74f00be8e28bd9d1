"""progress=: a callback gets Progress updates; True draws a tqdm bar; no tqdm, a clear error."""

from __future__ import annotations

import io
import sys

import httpx
import pytest

from gdos_sdk import Client
from gdos_sdk.progress import Progress, reporter, upload_size


def test_a_callback_gets_each_change_once() -> None:
    seen: list[Progress] = []
    with reporter(seen.append) as report:
        report(0, 10, "B")
        report(0, 10, "B")  # the same again: not repeated
        report(10, 10, "B", "done")
    assert seen == [Progress(0, 10, "B"), Progress(10, 10, "B", "done")]
    assert repr(seen[1]) == "Progress(10/10 B, 'done')"
    with reporter(None) as quiet:
        assert not quiet.active
    with pytest.raises(TypeError, match="progress must be"), reporter("yes"):  # type: ignore[arg-type]
        pass


def test_true_draws_a_tqdm_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with reporter(True, "upload") as report:
        report(512, 1024, "B")
        report(1024, 1024, "B")
    err = capsys.readouterr().err
    assert "upload" in err and "100%" in err and "1.00k" in err


def test_true_without_tqdm_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"pip install 'gdos\[notebook\]'"), reporter(True):
        pass


def test_upload_reports_the_bytes_sent() -> None:
    received: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        received.append(len(request.read()))
        body = {"name": "p", "version": "1.0.0", "sha256": "0" * 64, "size": received[-1],
                "uploaded_by": "u", "uploaded_at": "2024-01-01T00:00:00Z"}  # fmt: skip
        return httpx.Response(201, json=body)

    data = b"x" * (600 * 1024)
    seen: list[Progress] = []
    gdos = Client("http://master", token="t", transport=httpx.MockTransport(answer))
    try:
        package = gdos.upload_package(io.BytesIO(data), progress=seen.append)
        assert package.size == len(data)
        gdos.upload_package(data, progress=True)  # bytes, with a bar
    finally:
        gdos.close()
    assert received == [len(data), len(data)]
    assert [p.done for p in seen] == [256 * 1024, 512 * 1024, 600 * 1024]
    assert {p.total for p in seen} == {len(data)} and {p.unit for p in seen} == {"B"}
    assert upload_size(b"abc") == 3 and upload_size(io.BytesIO(b"abcd")) == 4
