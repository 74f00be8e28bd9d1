"""The Backups page: back up, change data, restore after confirming, reject a bad upload,
save the schedule; by the UI, against real processes."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from gdos_sdk.testing import LocalCluster, wait_until

from .conftest import login


def test_backup_restore_and_schedule_through_the_console(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    with cluster.client() as gdos:
        doomed = gdos.create_system("doomed-by-ui")
    login(page, cluster.url, cluster.admin_password)
    page.click("[data-test=nav-backups]")

    page.click("[data-test=backup-create]")
    table = page.locator("[data-test=backups-table] .el-table__body")
    expect(table).to_contain_text("Manual")
    expect(table).to_contain_text("-db-manual.tar.gz")

    with cluster.client() as gdos:
        gdos.delete_system(doomed.id)
        assert "doomed-by-ui" not in [s.name for s in gdos.list_systems()]

    # Restore asks first; after confirming, the master serves the backed-up state.
    table.locator("[data-test=backup-restore]").first.click()
    box = page.locator(".el-message-box")
    expect(box).to_contain_text("Replace all current data")
    box.locator("button", has_text="Restore").click()
    expect(page.locator(".el-message--success", has_text="Restored")).to_be_visible()
    with cluster.client() as gdos:
        wait_until(lambda: "doomed-by-ui" in [s.name for s in gdos.list_systems()], what="restore")

    # A file that is no backup is refused with the server's reason; nothing is added.
    bogus = tmp_path / "not-a-backup.tar.gz"
    bogus.write_bytes(b"this is not an archive" * 100)
    page.set_input_files("[data-test=backup-upload] input[type=file]", str(bogus))
    expect(page.locator(".el-message--error", has_text="not a GDOS backup")).to_be_visible()
    expect(table.locator(".el-table__row")).to_have_count(1)

    # The schedule is saved on the server.
    form = page.locator("[data-test=backup-schedule]")
    form.locator(".el-input-number input").first.fill("12")
    form.locator("button", has_text="Save").click()
    expect(page.locator(".el-message--success", has_text="Schedule saved")).to_be_visible()
    with cluster.client() as gdos:
        assert gdos.get_backup_schedule().interval_hours == 12
        # Still signed in after the restore: the session survived.
    expect(page.locator("[data-test=user-name]")).to_contain_text("admin")
