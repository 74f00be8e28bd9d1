"""Screenshots of every console page in English and Chinese, into docs/screenshots/.

Starts a real master and worker (``gdos_sdk.testing.LocalCluster``) in a temporary folder,
fills them with a little of everything through the SDK (a package built by gdos-pack, a
system whose instances run, planned nodes, users, a token), then drives Debian's Chromium
with Playwright through each page at 1280 x 800. Needs the built console (``nox -s web``).

    python tools/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from gdos_sdk.testing import LocalCluster, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "tests" / "e2e" / "services" / "http.py"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def build_package(work: Path, name: str, version: str) -> Path:
    folder = work / f"{name}-{version}"
    folder.mkdir(parents=True)
    manifest = {
        "name": name,
        "version": version,
        "description": "A tiny HTTP service",
        "entrypoint": "main.py",
        "env": {"PORT": "8000"},
        "restart": {"policy": "on-failure"},
    }
    (folder / "service.json").write_text(json.dumps(manifest, indent=2))
    main = folder / "main.py"
    main.write_text(SERVICE.read_text())
    main.chmod(0o755)
    out = work / f"{name}-{version}.zip"
    pack = Path(sys.executable).with_name("gdos-pack")
    argv = [str(pack)] if pack.exists() else [sys.executable, "-m", "gdos_pack"]
    subprocess.run([*argv, "build", str(folder), "-o", str(out)], check=True)
    return out


def seed(cluster: LocalCluster, work: Path) -> None:
    """A little of everything, through the SDK."""
    with cluster.client() as gdos:
        node = wait_until(lambda: gdos.list_nodes(status="online"), what="the worker")[0]
        gdos.update_node(node.id, alias="app-01")
        for version in ("1.0.0", "1.1.0", "1.2.0"):
            gdos.upload_package(build_package(work, "hello-http", version))
        gdos.upload_package(build_package(work, "billing-api", "2.3.1"))
        shop = gdos.create_system("shop", "The web shop and its API")
        gdos.create_system("billing", "Invoices and payments")
        web = gdos.create_module(
            shop.id, "web", "hello-http", "1.2.0", env={"PORT": str(free_port())}
        )
        api = gdos.create_module(
            shop.id, "api", "billing-api", "2.3.1", env={"PORT": str(free_port())}
        )
        gdos.deploy(web.id, node.id, start=True)
        gdos.deploy(api.id, node.id, start=True)
        gdos.deploy(web.id, node.id, start=False)  # a second, stopped copy
        for i in range(12):
            gdos.plan_node(
                f"rack{i // 4:02d}-node{i % 4:02d}.dc1.example",
                alias=f"db-{i:02d}" if i % 3 == 0 else "",
                addresses=[f"10.0.{i // 4}.{10 + i}"],
            )
        gdos.create_user("ops", "ops-password-1", "operator")
        gdos.create_user("auditor", "auditor-password-1", "viewer")
        gdos.create_token("ci-deploys")


def seed_alerts(cluster: LocalCluster) -> None:
    """Rules (one firing, one fired and resolved), a silence and a receiver, over the REST API."""
    headers = {"Authorization": f"Bearer {cluster.admin_token()}"}
    with httpx.Client(base_url=f"{cluster.url}/api/v1", headers=headers, timeout=30) as api:

        def post(path: str, body: dict[str, object]) -> dict[str, object]:
            response = api.post(path, json=body)
            response.raise_for_status()
            found: dict[str, object] = response.json()
            return found

        shop = next(s for s in api.get("/systems").json() if s["name"] == "shop")
        post(
            "/alerts/receivers",
            {"name": "ops-webhook", "url": f"http://127.0.0.1:{free_port()}/gdos", "secret": "s"},
        )
        post(
            "/alerts/rules",
            {
                "name": "Memory in use",
                "metric": "mem_percent",
                "op": ">",
                "threshold": 0,
                "severity": "critical",
                "labels": {"team": "ops"},
            },
        )
        post(
            "/alerts/rules",
            {
                "name": "CPU hot",
                "metric": "cpu",
                "op": ">",
                "threshold": 90,
                "for_seconds": 60,
                "clear_threshold": 80,
                "keep_firing_for": 30,
            },
        )
        post(
            "/alerts/rules",
            {
                "name": "Shop instance down",
                "metric": "instance_down",
                "severity": "critical",
                "target": {"kind": "instances", "system_id": shop["id"]},
            },
        )
        spike = {
            "name": "Load spike",
            "metric": "load1",
            "op": ">=",
            "threshold": 0,
            "severity": "info",
        }
        rule = post("/alerts/rules", spike)

        def active() -> list[dict[str, object]]:
            found: list[dict[str, object]] = api.get("/alerts/active").json()
            return found

        def firing(name: str) -> bool:
            return any(a["rule_name"] == name and a["state"] == "firing" for a in active())

        wait_until(lambda: firing("Memory in use") and firing("Load spike"), what="alerts to fire")
        # Raise the threshold out of reach: the load alert resolves into the history.
        api.put(f"/alerts/rules/{rule['id']}", json={**spike, "threshold": 1000}).raise_for_status()
        wait_until(lambda: not firing("Load spike"), what="the load alert to resolve")
        now = datetime.now(UTC)
        post(
            "/alerts/silences",
            {
                "matchers": [{"label": "severity", "value": "info"}],
                "ends_at": (now + timedelta(hours=4)).isoformat(),
                "comment": "maintenance window",
            },
        )


def shoot(page: Page, out: Path, name: str) -> None:
    time.sleep(0.6)  # transitions and the first live frames
    page.screenshot(path=str(out / f"{name}.png"))
    print("wrote", out / f"{name}.png")


def capture(cluster: LocalCluster, out: Path, chromium: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for lang in ("en", "zh-CN"):
            suffix = "en" if lang == "en" else "zh"
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(
                f"localStorage.setItem('gdos.lang', '{lang}');"
                " localStorage.setItem('gdos.dark', '0');"
            )
            page = context.new_page()
            url = cluster.url
            page.goto(f"{url}/login")
            page.fill("[data-test=login-username]", "admin")
            page.fill("[data-test=login-password]", "not-the-password")
            page.click("[data-test=login-submit]")
            page.wait_for_selector("[data-test=login-error]")
            shoot(page, out, f"login-{suffix}")
            page.fill("[data-test=login-password]", cluster.admin_password)
            page.click("[data-test=login-submit]")
            page.wait_for_selector("[data-test=nodes-card]")
            page.wait_for_selector(".top-row")
            shoot(page, out, f"dashboard-{suffix}")

            page.goto(f"{url}/nodes")
            page.wait_for_selector("[data-row]")
            shoot(page, out, f"nodes-{suffix}")
            page.click("[data-row] >> text=app-01")
            page.wait_for_function(
                "document.querySelector('[data-test=node-cpu-chart]')?.dataset.points >= 8",
                timeout=30_000,
            )
            shoot(page, out, f"node-drawer-{suffix}")

            page.goto(f"{url}/packages")
            page.wait_for_selector("[data-test=versions-table] .el-table__row")
            shoot(page, out, f"packages-{suffix}")

            page.goto(f"{url}/systems")
            page.click("[data-test=system-shop]")
            page.wait_for_selector(".el-table__body [data-state=running]")
            shoot(page, out, f"systems-{suffix}")
            page.locator(".el-table__body [data-test=instance-chart]").first.click()
            page.wait_for_function(
                "document.querySelector('[data-test=instance-cpu-chart]')?.dataset.points >= 5",
                timeout=30_000,
            )
            shoot(page, out, f"instance-drawer-{suffix}")

            for tab in ("active", "history", "rules", "silences", "receivers"):
                page.goto(f"{url}/alerts?tab={tab}")
                page.wait_for_selector(".el-tabs__content .el-table__row:visible")
                page.wait_for_load_state("networkidle")
                if tab == "rules":
                    page.click("[data-test=edit-rule-CPU\\ hot]")
                    page.wait_for_selector("[data-test=rule-submit]")
                shoot(page, out, f"alerts-{tab}-{suffix}")

            # the log viewer from an instance row (console output of the running web module)
            page.goto(f"{url}/systems")
            page.click("[data-test=system-shop]")
            page.wait_for_selector(".el-table__body [data-state=running]")
            page.locator("[data-test=instance-logs]:visible").first.click()
            page.wait_for_selector("[data-test=log-drawer] [data-test=log-text] .line")
            shoot(page, out, f"log-drawer-{suffix}")
            page.keyboard.press("Escape")

            page.click("[data-test=adopt-process]")
            page.wait_for_selector("[data-test=adopt-dialog]")
            page.fill("[data-test=adopt-name]", "legacy-daemon")
            shoot(page, out, f"adopt-dialog-{suffix}")
            page.keyboard.press("Escape")

            page.goto(f"{url}/commands")
            page.click("[data-test=command-nodes]")
            page.locator(".el-select-dropdown__item:visible").first.click()
            page.keyboard.press("Escape")
            page.fill("[data-test=command-text]", "uname -sr; df -h / | tail -1; uptime")
            page.click("[data-test=command-run]")
            page.wait_for_selector("[data-test=exit-code]")
            shoot(page, out, f"commands-{suffix}")

            page.goto(f"{url}/nodes")
            page.locator("[data-row] >> text=app-01").wait_for()
            page.click("[data-test=node-terminal]")
            page.wait_for_selector(
                "[data-test=terminal-state][data-phase=connected]", timeout=30_000
            )
            page.click("[data-test=terminal-screen]")
            page.keyboard.type("ls -la / | head -12; echo; uname -a")
            page.keyboard.press("Enter")
            page.wait_for_selector("[data-test=terminal-screen] .xterm-rows >> text=Linux")
            shoot(page, out, f"terminal-{suffix}")
            page.keyboard.type("exit")
            page.keyboard.press("Enter")
            page.wait_for_selector("[data-test=terminal-state][data-phase=ended]")
            page.locator("[data-test=terminal-recording]").click()
            page.wait_for_selector(
                "[data-test=replay-screen] .xterm-rows >> text=Linux", timeout=30_000
            )
            shoot(page, out, f"replay-{suffix}")

            page.goto(f"{url}/backups")
            page.click("[data-test=backup-create]")
            page.wait_for_selector("[data-test=backups-table] .el-table__row")
            page.wait_for_load_state("networkidle")
            shoot(page, out, f"backups-{suffix}")

            for name in ("audit", "users", "settings"):
                page.goto(f"{url}/{name}")
                page.wait_for_selector(".el-card")
                page.wait_for_load_state("networkidle")
                shoot(page, out, f"{name}-{suffix}")
            if lang == "en":
                page.goto(f"{url}/")
                page.evaluate("localStorage.setItem('gdos.dark', '1')")
                page.reload()
                page.wait_for_selector(".top-row")
                shoot(page, out, "dashboard-dark-en")
            context.close()
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    if not (ROOT / "gdos_master" / "static" / "index.html").is_file():
        print("the console is not built: run nox -s web", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gdos-shots-") as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster", admin_password="screenshots-admin-1")
        try:
            cluster.start_master()
            # An explicit shell: a login profile with slow hooks would delay the first prompt.
            cluster.start_worker(
                env={"OPS_WORKER_TERMINAL_SHELL": "/bin/bash --noprofile --norc -i"}
            )
            seed(cluster, Path(tmp) / "pkgs")
            seed_alerts(cluster)
            capture(cluster, out, args.chromium)
        finally:
            cluster.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
