"""The console reads right in both languages, at common widths, to every role, from the first load.

Counts say "1 module" and "2 modules" (and read naturally in Chinese); the node table's
headers and search box fit at 1280-1920 px; row actions are Element Plus icons with a
tooltip and an aria-label; a viewer sent away from an admin-only page is told why; the audit
log names who logged in; a first visit logs no error in the browser console.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from gdos_sdk.testing import LocalCluster

from .conftest import login
from .test_console import build_package

WIDTHS = (1280, 1400, 1600, 1920)
GLYPHS = "∿☷▶■↻✕✓⌨✎"
VIEWER = ("watcher", "watcher-password-1")


@pytest.fixture(scope="module")
def fleet(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> LocalCluster:
    """Systems with 0, 1 and 2 modules and instances (deployed, not started); a viewer."""
    package = build_package(tmp_path_factory.mktemp("package"))
    with cluster.client() as gdos:
        gdos.upload_package(package)
        node = gdos.list_nodes()[0].id
        for name, count in (("alpha", 1), ("beta", 2), ("gamma", 0)):
            system = gdos.create_system(name)
            for i in range(count):
                module = gdos.create_module(system.id, f"m{i}", "http", "1.0.0")
                gdos.deploy(module.id, node, start=False)
        gdos.create_user(*VIEWER, "viewer")
    return cluster


def use_language(page: Page, lang: str) -> None:
    """Open the console in ``lang`` (as remembered by an earlier visit)."""
    page.add_init_script(
        f"localStorage.getItem('gdos.lang') || localStorage.setItem('gdos.lang', '{lang}')"
    )


# --- plural forms --------------------------------------------------------------------------------


COUNTS = {
    "en": {
        "alpha": "1 module · 1 instance",
        "beta": "2 modules · 2 instances",
        "gamma": "0 modules · 0 instances",
    },
    "zh-CN": {
        "alpha": "1 个模块 · 1 个实例",
        "beta": "2 个模块 · 2 个实例",
        "gamma": "0 个模块 · 0 个实例",
    },
}


def test_system_counts_use_plural_forms_in_both_languages(page: Page, fleet: LocalCluster) -> None:
    use_language(page, "en")
    login(page, fleet.url, fleet.admin_password)
    page.click("[data-test=nav-systems]")
    for lang in ("en", "zh-CN"):
        if lang != "en":
            page.click("[data-test=lang-toggle]")
        for name, text in COUNTS[lang].items():
            expect(page.locator(f"[data-test=system-{name}] .small")).to_have_text(text)


# --- the node table at common widths -------------------------------------------------------------

# For each header cell: is its content (text and sort mark) inside the cell's padding box,
# and is the cell inside the table's visible area? A right-aligned label that overflows is
# cut on its left (the first letters of "Instances" gone) without growing scrollWidth, so the
# content box is measured.
HEADERS_FIT = """
() => {
  const table = document.querySelector('[data-test=nodes-table]').getBoundingClientRect();
  return [...document.querySelectorAll('[data-test=nodes-table] .vt-th')].map((th) => {
    const box = th.getBoundingClientRect();
    const style = getComputedStyle(th);
    const range = document.createRange();
    range.selectNodeContents(th);
    const content = range.getBoundingClientRect();
    const left = box.left + parseFloat(style.paddingLeft);
    const right = box.right - parseFloat(style.paddingRight);
    return {
      label: th.textContent.trim(),
      fits: content.left >= left - 0.5 && content.right <= right + 0.5,
      visible: box.left >= table.left - 0.5 && box.right <= table.right + 0.5,
    };
  });
}
"""

# The search box's placeholder, measured in the input's own font, against its text room.
PLACEHOLDER_FITS = """
() => {
  const found = document.querySelector('[data-test=nodes-search]');
  const input = found.matches('input') ? found : found.querySelector('input');
  const style = getComputedStyle(input);
  const context = document.createElement('canvas').getContext('2d');
  context.font = style.font;
  const text = context.measureText(input.placeholder).width;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return { placeholder: input.placeholder, text, room };
}
"""


def test_node_table_headers_and_search_fit_at_common_widths(
    page: Page, fleet: LocalCluster
) -> None:
    use_language(page, "en")
    login(page, fleet.url, fleet.admin_password)  # an admin: the widest table (row actions)
    page.click("[data-test=nav-nodes]")
    expect(page.locator("[data-test=nodes-table] [data-row]")).to_have_count(1)
    for lang in ("en", "zh-CN"):
        if lang != "en":
            page.click("[data-test=lang-toggle]")
            expect(page.locator("[data-test=th-status]")).to_contain_text("状态")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_function(f"window.innerWidth === {width}")
            where = f"{lang} at {width} px"
            cells: list[dict[str, Any]] = page.evaluate(HEADERS_FIT)
            assert len(cells) == 8
            assert [c["label"] for c in cells if not c["fits"]] == [], f"clipped: {where}"
            assert [c["label"] for c in cells if not c["visible"]] == [], f"hidden: {where}"
            search = page.evaluate(PLACEHOLDER_FITS)
            assert search["text"] <= search["room"], f"placeholder cut: {where}: {search}"


# --- icons with tooltips and labels --------------------------------------------------------------


# How far each button of a table cell reaches past the cell's content box (> 0: cut off).
BUTTONS_OVERFLOW = """
(td) => {
  const cell = td.querySelector('.cell');
  const padding = parseFloat(getComputedStyle(cell).paddingRight);
  const right = cell.getBoundingClientRect().right - padding;
  return [...cell.querySelectorAll('button')].map((b) => b.getBoundingClientRect().right - right);
}
"""


def hover_tooltip(page: Page, button: Any) -> str:
    """Hover ``button`` and return the text of the tooltip that shows."""
    tips = page.locator(".el-popper[role=tooltip]:visible")
    page.mouse.move(0, 0)
    expect(tips).to_have_count(0)  # the previous one has faded out
    button.hover()
    expect(tips).to_have_count(1)
    return str(tips.inner_text()).strip()


def test_row_actions_are_icons_with_tooltips_and_labels(page: Page, fleet: LocalCluster) -> None:
    login(page, fleet.url, fleet.admin_password)

    page.click("[data-test=nav-systems]")
    page.click("[data-test=system-alpha]")
    row = page.locator("[data-test=module-m0] [data-test=instances-table] .el-table__body tr")
    expect(row).to_have_count(1)
    expected = {
        "instance-chart": "Charts",
        "instance-logs": "Logs",
        "instance-start": "Start",
        "instance-stop": "Stop",
        "instance-restart": "Restart",
        "instance-destroy": "Destroy",
    }
    for test_id, label in expected.items():
        button = row.locator(f"[data-test={test_id}]")
        expect(button).to_have_attribute("aria-label", label)
        expect(button.locator("svg")).to_have_count(1)
        assert not set(button.inner_text()) & set(GLYPHS)
    # All six fit in their cell's content box (none cut at its edge).
    overflow = row.locator("td").last.evaluate(BUTTONS_OVERFLOW)
    assert len(overflow) == 6 and max(overflow) <= 0.5, overflow
    # At 1280 px the whole instance table fits its card: no action is scrolled out of view.
    page.set_viewport_size({"width": 1280, "height": 800})
    table = page.locator("[data-test=module-m0] [data-test=instances-table]")
    visible = table.evaluate("(t) => t.getBoundingClientRect().right")
    last = row.locator("[data-test=instance-destroy]")
    edge = last.evaluate("(b) => b.getBoundingClientRect().right")
    assert edge <= visible, f"the last action ends at {edge} px, the table at {visible} px"
    for test_id in ("instance-chart", "instance-destroy"):
        assert hover_tooltip(page, row.locator(f"[data-test={test_id}]")) == expected[test_id]

    page.click("[data-test=nav-nodes]")
    actions = page.locator("[data-test=nodes-table] [data-row]").first
    for test_id, label in (
        ("node-terminal", "Terminal"),
        ("node-rename", "Rename"),
        ("node-delete", "Delete"),
    ):
        button = actions.locator(f"[data-test={test_id}]")
        expect(button).to_have_attribute("aria-label", label)
        expect(button.locator("svg")).to_have_count(1)
        assert not set(button.inner_text()) & set(GLYPHS)
    assert hover_tooltip(page, actions.locator("[data-test=node-terminal]")) == "Terminal"
    assert hover_tooltip(page, actions.locator("[data-test=node-delete]")) == "Delete"
    # Keyboard focus shows the same tooltip.
    page.mouse.move(0, 0)
    actions.locator("[data-test=node-rename]").focus()
    expect(page.locator(".el-popper[role=tooltip]:visible")).to_have_text("Rename")


# --- refused pages, audit, first load ------------------------------------------------------------


def test_a_viewer_sent_away_from_an_admin_page_is_told_why(page: Page, fleet: LocalCluster) -> None:
    use_language(page, "en")
    login(page, fleet.url, VIEWER[1], user=VIEWER[0])
    refused = page.locator(".refused-message")
    for path, message in (
        ("/terminal/any-node", "Terminal is for admins only; your role is Viewer."),
        ("/commands", "Commands is for admins only; your role is Viewer."),
    ):
        page.goto(f"{fleet.url}{path}")
        expect(refused).to_contain_text(message)
        expect(page).to_have_url(f"{fleet.url}/")
    page.click("[data-test=lang-toggle]")
    page.goto(f"{fleet.url}/commands")
    expect(refused).to_have_text("“批量命令”仅限管理员使用；你当前的角色是“只读”。")  # noqa: RUF001
    expect(page).to_have_url(f"{fleet.url}/")


def test_audit_log_names_the_user_who_logged_in(page: Page, fleet: LocalCluster) -> None:
    login(page, fleet.url, fleet.admin_password)
    page.click("[data-test=nav-audit]")
    page.fill("[data-test=audit-action]", "auth.login")
    page.click("[data-test=audit-search]")
    rows = page.locator("[data-test=audit-table] .el-table__body tr")
    expect(rows.first).to_contain_text("auth.login")
    users = rows.locator("[data-test=audit-actor]").all_inner_texts()
    assert users and all(user.split()[0] not in ("", "—") for user in users), users
    assert "admin session" in [" ".join(user.split()) for user in users]


@pytest.fixture
def console_log(page: Page) -> Iterator[list[str]]:
    """Errors and warnings the page logs to the browser console."""
    found: list[str] = []

    def keep(message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            found.append(f"{message.type}: {message.text} ({message.location.get('url')})")

    page.on("console", keep)
    yield found


def test_first_load_logs_no_console_error(
    page: Page, fleet: LocalCluster, console_log: list[str]
) -> None:
    page.goto(f"{fleet.url}/")  # a first visit: no session
    expect(page.locator("[data-test=login-submit]")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert console_log == []
    login(page, fleet.url, fleet.admin_password)
    page.reload()  # a first load with a session
    expect(page.locator("[data-test=nodes-card]")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert console_log == []


def test_a_stale_session_cookie_is_dropped_after_one_check(
    page: Page, fleet: LocalCluster, console_log: list[str]
) -> None:
    login(page, fleet.url, fleet.admin_password)
    with fleet.client() as gdos:  # ends every session of the user
        admin = next(u for u in gdos.list_users() if u.username == "admin")
        gdos.update_user(admin.id, password=fleet.admin_password)
    page.goto(f"{fleet.url}/nodes")
    expect(page).to_have_url(re.compile(r"/login\?redirect="))
    page.wait_for_load_state("networkidle")
    console_log.clear()  # that load's 401 was the news that the session had ended
    page.goto(f"{fleet.url}/")
    expect(page.locator("[data-test=login-submit]")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert console_log == []
