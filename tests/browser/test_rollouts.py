"""The systems page: change a module's version with a canary rollout, follow it live, promote it;
and a bad version that the rollout reverts by itself, shown with its reason."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Page, expect

from gdos_sdk import InstanceState
from gdos_sdk.testing import LocalCluster

from ..conftest import write_service
from .conftest import login

SERVICE = Path(__file__).parents[1] / "e2e" / "services" / "versioned.py"


def build_package(
    tmp_path: Path, version: str, name: str = "versioned", env: dict[str, str] | None = None
) -> Path:
    """tests/e2e/services/versioned.py at this version, packed by the real gdos-pack
    (``env``: the manifest's, e.g. ``CRASH_AFTER`` for a version that crashes)."""
    manifest: dict[str, object] = {"name": name, "version": version, "entrypoint": "main.py"}
    if env:
        manifest["env"] = env
    folder = write_service(
        tmp_path / "src" / f"{name}-{version}",
        manifest,
        {"main.py": SERVICE.read_text()},
        exec_files=("main.py",),
    )
    out = tmp_path / f"{name}-{version}.zip"
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


def test_a_canary_rollout_started_in_the_console_is_followed_live_and_promoted(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    with cluster.client() as gdos:
        node_id = cluster.wait_worker_connected(cluster.workers[0])
        for version in ("1.0.0", "2.0.0"):
            gdos.upload_package(build_package(tmp_path, version))
        system = gdos.create_system("rollout-ui")
        module = gdos.create_module(system.id, "api", "versioned", "1.0.0")
        ids = [gdos.deploy(module.id, node_id, wait="running").id for _ in range(2)]
        for instance_id in ids:
            gdos.wait_for_instance(instance_id, "running", timeout=30)

    login(page, cluster.url, cluster.admin_password)
    page.goto(f"{cluster.url}/systems/{system.id}")
    card = page.locator("[data-test=module-api]")
    expect(card.locator("[data-test=module-version-tag]")).to_have_text("versioned@1.0.0")
    # Instance rows name a version only when it is not the module's.
    versions = card.locator("[data-test=instance-version]")
    expect(card.locator("[data-test=instances-table] [data-state=running]")).to_have_count(2)
    expect(versions).to_have_count(0)

    # Change version: the picker offers the stored versions (the current one disabled).
    card.locator("[data-test=change-version]").click()
    dialog = page.locator("[data-test=rollout-dialog]")
    expect(dialog).to_be_visible()
    dialog.locator("[data-test=rollout-version]").click()
    expect(page.locator("[data-test=rollout-version-1\\.0\\.0]")).to_have_class(
        "el-select-dropdown__item is-disabled"
    )
    page.locator("[data-test=rollout-version-2\\.0\\.0]").click()
    dialog.get_by_text("Running", exact=True).click()
    dialog.locator("[data-test=rollout-canary] input").fill("1")
    dialog.locator("[data-test=rollout-canary] input").press("Tab")
    dialog.locator("[data-test=rollout-submit]").click()
    expect(page.get_by_text("Rollout to 2.0.0 started")).to_be_visible()

    # The card follows the rollout live: one canary moves, then it waits for promotion.
    with cluster.client() as gdos:
        [started] = gdos.list_rollouts(module_id=module.id)
    progress = card.locator(f"[data-test=rollout-{started.id}]")
    expect(progress).to_have_attribute("data-state", "awaiting_promotion", timeout=30_000)
    steps = progress.locator("[data-step]")
    expect(steps).to_have_count(2)
    expect(progress.locator("[data-step=done]")).to_have_count(1)
    expect(progress.locator("[data-step=waiting]")).to_have_count(1)
    expect(progress).to_contain_text("1 of 2 moved")
    expect(card.locator("[data-test=module-version-tag]")).to_have_text("versioned@2.0.0")
    expect(versions).to_have_count(1)
    expect(versions).to_have_text(re.compile(r"^1\.0\.0"))
    expect(card.locator("[data-test=change-version]")).to_be_disabled()

    progress.locator("[data-test=rollout-promote]").click()
    expect(progress).to_have_attribute("data-state", "done", timeout=30_000)
    expect(progress.locator("[data-step=done]")).to_have_count(2)
    expect(progress).to_contain_text("2 of 2 moved")
    # The instances run the new version in place (same ids): the rows no longer differ
    # from the module, and an instance's drawer names its version.
    expect(versions).to_have_count(0)
    card.locator("[data-test=instance-chart]").first.click()
    expect(page.locator("[data-test=drawer-version]")).to_have_text("2.0.0")
    page.keyboard.press("Escape")
    with cluster.client() as gdos:
        assert {i.id: i.version for i in gdos.list_instances(module_id=module.id)} == {
            i: "2.0.0" for i in ids
        }
        assert gdos.get_rollout(started.id).promoted_at is not None

    # The module's history lists it; picking it shows its instances.
    expect(card.locator("[data-test=change-version]")).to_be_enabled()
    progress.locator("[data-test=rollout-close]").click()
    expect(progress).to_have_count(0)
    card.locator("[data-test=rollout-history-open]").click()
    history = page.locator("[data-test=rollout-history-table]")
    expect(history.locator("tbody tr")).to_have_count(1)
    expect(history).to_contain_text("1.0.0 → 2.0.0")
    history.locator("[data-state=done]").click()
    shown = page.locator(f"[data-test=rollout-history] [data-test=rollout-{started.id}]")
    expect(shown.locator("[data-step=done]")).to_have_count(2)


def test_a_crashing_version_is_reverted_by_itself_and_the_console_says_why(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    with cluster.client() as gdos:
        node_id = cluster.wait_worker_connected(cluster.workers[0])
        gdos.upload_package(build_package(tmp_path, "1.0.0", name="reverting"))
        gdos.upload_package(
            build_package(tmp_path, "1.1.0", name="reverting", env={"CRASH_AFTER": "1"})
        )
        system = gdos.create_system("revert-ui")
        module = gdos.create_module(system.id, "api", "reverting", "1.0.0")
        ids = [gdos.deploy(module.id, node_id, wait="running").id for _ in range(2)]
        for instance_id in ids:
            gdos.wait_for_instance(instance_id, "running", timeout=30)
        pids = {i: gdos.get_instance(i).pid for i in ids}

    login(page, cluster.url, cluster.admin_password)
    page.goto(f"{cluster.url}/systems/{system.id}")
    card = page.locator("[data-test=module-api]")
    expect(card.locator("[data-test=module-version-tag]")).to_have_text("reverting@1.0.0")

    # 1.1.0, both at once, each to stay up 3 s: it crashes after 1 s. auto_revert is the default.
    card.locator("[data-test=change-version]").click()
    dialog = page.locator("[data-test=rollout-dialog]")
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-test=rollout-auto-revert]")).to_have_class(
        re.compile(r"\bis-checked\b")
    )
    dialog.locator("[data-test=rollout-version]").click()
    page.locator("[data-test=rollout-version-1\\.1\\.0]").click()
    for field, value in (("rollout-parallel", "2"), ("rollout-min-healthy", "3")):
        dialog.locator(f"[data-test={field}] input").fill(value)
        dialog.locator(f"[data-test={field}] input").press("Tab")
    dialog.locator("[data-test=rollout-submit]").click()
    expect(page.get_by_text("Rollout to 1.1.0 started")).to_be_visible()

    with cluster.client() as gdos:
        [started] = gdos.list_rollouts(module_id=module.id)
    progress = card.locator(f"[data-test=rollout-{started.id}]")
    # The progress view shows the failure, then the revert, and the reason for it.
    expect(progress).to_have_attribute("data-state", "reverted", timeout=30_000)
    expect(progress.locator("[data-step=reverted]")).to_have_count(2)
    expect(progress.locator("[data-step=done]")).to_have_count(0)
    reason = progress.locator("[data-test=rollout-error]")
    expect(reason).to_contain_text("crashed on 1.1.0")
    expect(reason).to_contain_text("reverted to 1.0.0")
    expect(progress.locator("[data-test=rollout-items]")).to_contain_text("crashed on 1.1.0")
    expect(progress).to_contain_text("0 of 2 moved")
    expect(progress.locator("[data-test=rollout-promote]")).to_have_count(0)
    expect(progress.locator("[data-test=rollout-close]")).to_be_visible()

    # The module is back on 1.0.0 and so is every instance, running under its own id.
    expect(card.locator("[data-test=module-version-tag]")).to_have_text("reverting@1.0.0")
    expect(card.locator("[data-test=instances-table] [data-state=running]")).to_have_count(
        2, timeout=30_000
    )
    expect(card.locator("[data-test=instance-version]")).to_have_count(0)
    with cluster.client() as gdos:
        after = {i.id: i for i in gdos.list_instances(module_id=module.id)}
        assert set(after) == set(ids)
        for instance_id, instance in after.items():
            assert (instance.version, instance.desired_version) == ("1.0.0", "1.0.0")
            assert instance.state == InstanceState.RUNNING
            assert instance.pid != pids[instance_id]  # it did move, and came back
        assert gdos.get_module(module.id).version == "1.0.0"
