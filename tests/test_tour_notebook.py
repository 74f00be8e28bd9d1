"""docs/notebooks/tour.ipynb runs from top to bottom in a real kernel and shows what it says."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from gdos_sdk.testing import kill_instances_under

NOTEBOOK = Path(__file__).parents[1] / "docs" / "notebooks" / "tour.ipynb"

pytestmark = pytest.mark.e2e


def venv_kernel(folder: Path) -> Path:
    """A kernelspec named like the notebook's (python3) that runs this very interpreter.

    Found first through JUPYTER_PATH, so a kernel registered elsewhere on the machine (or
    none at all, in a fresh CI clone) makes no difference.
    """
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "GDOS (this venv)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return folder


def text(outputs: list[Any], kind: str = "text/plain") -> str:
    found = [o["data"][kind] for o in outputs if "data" in o and kind in o["data"]]
    return "\n".join(found)


def streams(outputs: list[Any], name: str) -> str:
    return "".join(
        o["text"] for o in outputs if o.get("output_type") == "stream" and o["name"] == name
    )


def test_the_tour_runs_and_its_outputs_say_what_the_text_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(venv_kernel(tmp_path / "jupyter")))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells), "commit the notebook without outputs"
    client = NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    finally:
        kill_instances_under(tmp_path)  # a failed run leaves nothing behind either
    out = {c.id: c.outputs for c in notebook.cells if c.cell_type == "code"}
    assert not [o for cell in out.values() for o in cell if o["output_type"] == "error"]

    started = text(out["start"], "text/html")
    assert "GDOS LocalCluster" in started and "worker1" in started and "Console" in started
    assert text(out["nodes"]).startswith("[2 Node")

    bar = streams(out["deploy"], "stderr")
    assert "upload" in bar and "100%" in bar  # the tqdm bar of progress=True
    deployed = text(out["deploy"], "text/html")
    assert 'data-state="running"' in deployed and 'data-state="healthy"' in deployed

    shape = re.fullmatch(r"\((\d+), (\d+)\)", text(out["frame"]))
    assert shape is not None, text(out["frame"])
    rows, columns = int(shape[1]), int(shape[2])
    assert columns == 2  # a column per node
    assert 2 <= rows < 600  # the seconds this cluster has lived, not 3600, as the text says
    assert text(out["plot"], "image/png")
    assert "count" in text(out["describe"])

    samples = ast.literal_eval(text(out["live"]))
    assert len(samples) == 3 and all(processes >= 1 for _, _, processes in samples)
    assert [t for t, _, _ in samples] == sorted(t for t, _, _ in samples)

    printed = streams(out["command"], "stdout").splitlines()
    assert len(printed) == 2 and all(line.endswith(" 0 hello from Linux") for line in printed)
    per_node = ast.literal_eval(text(out["command"]))
    assert list(per_node.values()) == [0, 0]

    closed = text(out["close"])
    assert closed.startswith("<LocalCluster closed root=")
    root = Path(closed.removeprefix("<LocalCluster closed root=").rstrip(">"))
    assert not root.exists()
    assert kill_instances_under(root) == []
