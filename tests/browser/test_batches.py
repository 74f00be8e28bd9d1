"""The systems page: edit module order, run an ordered batch, watch its tiers and health."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Page, expect

from gdos_sdk.testing import LocalCluster, free_port

from ..conftest import write_service
from .conftest import login

SERVICE = Path(__file__).parents[1] / "e2e" / "services" / "healthy.py"


def build_package(tmp_path: Path) -> Path:
    """tests/e2e/services/healthy.py with an http check, packed by the real gdos-pack."""
    check = {"type": "http", "url": "http://127.0.0.1:${PORT}/", "interval": 0.3}
    folder = write_service(
        tmp_path / "src" / "healthy-1.0.0",
        {"name": "healthy", "version": "1.0.0", "entrypoint": "main.py", "health_check": check},
        {"main.py": SERVICE.read_text()},
        exec_files=("main.py",),
    )
    out = tmp_path / "healthy-1.0.0.zip"
    script = Path(sys.executable).with_name("gdos-pack")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "gdos_pack"]
    result = subprocess.run(
        [*argv, "build", str(folder), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_ordered_start_shows_tier_progress_and_health(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    with cluster.client() as gdos:
        node_id = cluster.wait_worker_connected(cluster.workers[0])
        uploaded = gdos.upload_package(build_package(tmp_path))
        system = gdos.create_system("ordered-ui")
        for name in ("db", "api"):
            env = {"PORT": str(free_port()), "LISTEN_DELAY": "0.5"}
            module = gdos.create_module(system.id, name, uploaded.name, uploaded.version, env=env)
            gdos.deploy(module.id, node_id, start=False, wait="started")

        empty = gdos.create_system("empty-ui")

    login(page, cluster.url, cluster.admin_password)
    # Opened by its URL, a system with modules never shows "No modules yet", not even
    # while its modules load (a MutationObserver notes every appearance).
    page.add_init_script(
        "window.__noModules = 0; new MutationObserver(() => {"
        " if (document.body && document.body.textContent.includes('No modules yet'))"
        " window.__noModules++ }).observe(document, { childList: true, subtree: true })"
    )
    page.goto(f"{cluster.url}/systems/{system.id}")
    expect(page.locator("[data-test=module-api]")).to_be_visible()
    assert page.evaluate("window.__noModules") == 0
    page.goto(f"{cluster.url}/systems/{empty.id}")
    expect(page.locator("[data-test=no-modules]")).to_be_visible()
    page.goto(f"{cluster.url}/systems/{system.id}")
    order = page.locator("[data-test=module-api] [data-test=module-order] input")
    order.fill("5")
    order.press("Enter")
    expect(page.get_by_text("Start order saved")).to_be_visible()

    page.click("[data-test=system-start]")
    progress = page.locator("[data-test=batch-progress]")
    expect(progress).to_contain_text("Order 0")
    expect(progress).to_contain_text("Order 5")
    expect(progress.locator("[data-state=done]")).to_be_visible(timeout=30_000)
    expect(progress).to_contain_text("Order 5 · 1/1")
    for name in ("db", "api"):
        table = page.locator(f"[data-test=module-{name}] [data-test=instances-table]")
        expect(table.locator("[data-state=running]")).to_be_visible()
        expect(table.locator("[data-state=healthy]")).to_be_visible()
    with cluster.client() as gdos:
        job = gdos.list_batches(system.id)[0]
        assert [t.order for t in job.tiers] == [0, 5] and job.state.value == "done"

    # A finished batch is not shown again; a failed one is, with its reason, to whoever
    # opens the system afterwards.
    page.reload()
    expect(page.locator("[data-test=module-api]")).to_be_visible()
    expect(progress).to_have_count(0)
    with cluster.client() as gdos:
        far = gdos.plan_node("far-away")  # never connects: the start cannot be applied
        broken = gdos.create_system("broken-ui")
        module = gdos.create_module(broken.id, "db", uploaded.name, uploaded.version)
        gdos.deploy(module.id, far.id, start=False, wait="started")
        failed = gdos.get_batch(gdos.start_batch(broken.id, "start").id, wait=10)
        assert failed.state.value == "failed"
    page.goto(f"{cluster.url}/systems/{broken.id}")
    expect(progress).to_contain_text("node is offline")
    expect(progress.locator("[data-state=failed]").first).to_be_visible()
