"""Export the dashboard's main screens as SVG into ``screenshots/``.

Run from the repository root: ``python scripts/screenshots.py``. The screens are the same
as the snapshot tests (tests/ui/test_snapshots.py): a fixed store, fixed ids, a fixed
clock and a fixed disk, driven with ``App.run_test`` and saved with ``save_screenshot``.

``screenshots/browser.png`` is the same store served by ``cachetui serve`` and shot in
Debian's Chromium (as tests/web does); it is skipped, saying so, without the browser.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from textual.widgets import Input  # noqa: E402

from cachetui.app import CacheTuiApp  # noqa: E402
from tests.ui.conftest import loaded, settle, wait_for  # noqa: E402
from tests.ui.store_fixture import FixedClock, build_fixture_store, fixed_disk_stat  # noqa: E402

OUT = REPO / "screenshots"

#: Fonts common renderers have (browsers, rsvg-convert, image viewers), instead of the
#: web font Rich names (Fira Code, fetched from a CDN that an offline renderer lacks).
MONO = '"DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, "Courier New", monospace'
SANS = '"DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif'


def portable_svg(svg: str) -> str:
    """Name fonts every renderer has, and keep runs of spaces (rsvg-convert collapses
    leading spaces in a text run unless told to preserve them)."""
    svg = re.sub(r"@font-face\s*\{[^}]*\}\s*", "", svg)
    svg = svg.replace("font-family: Fira Code, monospace;", f"font-family: {MONO};")
    svg = svg.replace("font-family: arial;", f"font-family: {SANS};")
    if 'xml:space="preserve"' not in svg:
        svg = svg.replace("<svg ", '<svg xml:space="preserve" ', 1)
    return svg


Scenario = Callable[[object, CacheTuiApp, dict[str, str]], Awaitable[None]]


async def main_screen(pilot, app, ids):
    app.ref_tree.select_id(ids["pip"])
    app.ref_tree.select_id(ids["old"])
    await pilot.press("space")


async def details(pilot, app, ids):
    app.ref_tree.select_id(ids["pip"])
    await settle(pilot)
    await wait_for(pilot, lambda: app.details and app.details.record.id == ids["pip"])


async def prune_confirmation(pilot, app, ids):
    app.ref_tree.select_id(ids["old"])
    await pilot.press("space", "space", "d")
    await wait_for(pilot, lambda: len(app.screen_stack) > 1)


async def policy_preview(pilot, app, ids):
    await pilot.press("p")
    await wait_for(pilot, lambda: len(app.screen_stack) > 1)
    screen = app.screen
    for widget in screen.query(Input):
        widget.cursor_blink = False
    screen.query_one("#filters", Input).value = "type==regular"
    screen.query_one("#keep", Input).value = "7d"
    screen.action_preview()
    await wait_for(pilot, lambda: screen.plan is not None)


async def gc_preview(pilot, app, ids):
    app.ref_tree.select_id(ids["old"])
    await settle(pilot)
    await pilot.press("g")
    await wait_for(pilot, lambda: len(app.screen_stack) > 1)
    screen = app.screen
    for widget in screen.query(Input):
        widget.cursor_blink = False
    await wait_for(pilot, lambda: getattr(screen, "preview", None) is not None)


async def help_screen(pilot, app, ids):
    await pilot.press("question_mark")
    await wait_for(pilot, lambda: len(app.screen_stack) > 1)


async def filter_error(pilot, app, ids):
    await pilot.press("slash")
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.press(*"type==regular,inuse,size>")


async def nothing(pilot, app, ids):
    return None


async def deep_tree(pilot, app, ids):
    app.ref_tree.select_id(ids["strip"])
    app.ref_tree.select_id(ids["npm"])
    await settle(pilot)
    app.ref_tree.select_id(ids["strip"])


async def deep_filter(pilot, app, ids):
    await pilot.press("slash")
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.press(*"description~=strip")
    await wait_for(pilot, lambda: app.ref_tree.matches is not None)


async def policy_80x24(pilot, app, ids):
    await pilot.press("p")
    await wait_for(pilot, lambda: len(app.screen_stack) > 1)
    screen = app.screen
    for widget in screen.query(Input):
        widget.cursor_blink = False
    screen.query_one("#all").value = True
    await settle(pilot)  # the checkbox's change resets the plan: let it land first
    screen.action_preview()
    await wait_for(pilot, lambda: screen.plan is not None)


async def chain_confirmation(pilot, app, ids):
    app.ref_tree.select_id(ids["build"])
    await settle(pilot)
    await pilot.press("x")
    await wait_for(pilot, lambda: len(app.marks) == 4)
    await settle(pilot)
    await pilot.press("d")
    await wait_for(pilot, lambda: len(app.screen_stack) > 1)


async def search(pilot, app, ids):
    await pilot.press("slash")
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.press(*"go build")
    await wait_for(pilot, lambda: app.ref_tree.matches is not None)


SCREENS: list[tuple[str, tuple[int, int], Scenario, bool]] = [
    ("main", (130, 36), deep_tree, True),
    ("marked", (130, 36), main_screen, True),
    ("details", (130, 36), details, True),
    ("prune-confirmation", (120, 34), prune_confirmation, True),
    ("chain-prune-confirmation", (120, 34), chain_confirmation, True),
    ("search", (120, 34), search, True),
    ("policy-preview", (120, 40), policy_preview, True),
    ("gc-preview", (120, 40), gc_preview, True),
    ("help", (120, 34), help_screen, True),
    ("filter-error", (120, 34), filter_error, True),
    ("empty-store", (100, 24), nothing, False),
    ("80x24", (80, 24), details, True),
    ("80x24-policy", (80, 24), policy_80x24, True),
    ("80x24-help", (80, 24), help_screen, True),
    ("80x24-filter", (80, 24), deep_filter, True),
]


def fixed_base() -> Path:
    """One fixed scratch path, so the store path in the header is the same on every run and a
    regeneration changes only what really changed on screen."""
    base = Path(tempfile.gettempdir()) / "cachetui-screenshots"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    return base


async def shoot(name: str, size: tuple[int, int], scenario: Scenario, seeded: bool) -> Path:
    base = fixed_base()
    try:
        root = base / "store"
        ids = build_fixture_store(root) if seeded else {}
        app = CacheTuiApp(root, clock=FixedClock(), live=seeded, disk_stat=fixed_disk_stat)
        app.animation_level = "none"
        async with app.run_test(size=size) as pilot:
            await loaded(pilot)
            await scenario(pilot, app, ids)
            await settle(pilot)
            for toast in app.screen.query("Toast"):
                toast.remove()
            path = Path(app.save_screenshot(filename=f"{name}.svg", path=str(OUT)))
        path.write_text(portable_svg(path.read_text()))
        return path
    finally:
        shutil.rmtree(base, ignore_errors=True)


def shoot_browser() -> Path | None:
    """The fixture store in a browser tab; None when Chromium or Playwright is missing."""
    from tests.web.browser import CHROMIUM, DashboardPage, chromium, served

    try:
        from playwright import sync_api
    except ImportError:
        print("skipped browser.png: playwright is not installed")
        return None
    if not CHROMIUM.exists():
        print(f"skipped browser.png: {CHROMIUM} is missing (apt-get install chromium)")
        return None
    base = fixed_base()
    try:
        root = base / "store"
        ids = build_fixture_store(root)
        with served(root, log=base / "serve.log") as url, chromium(sync_api) as browser:
            page = DashboardPage.open(browser, url, size=(1200, 640))
            page.wait_for(lambda lines: page.row(lines, ids["old"]), "the tree")
            page.wait_for(lambda lines: any(ids["old"] in line for line in lines[-12:]), "details")
            path = OUT / "browser.png"
            page.page.screenshot(path=str(path))
            page.page.close()
        return path
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def run() -> None:
    OUT.mkdir(exist_ok=True)
    for name, size, scenario, seeded in SCREENS:
        path = await shoot(name, size, scenario, seeded)
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(run())
    shot = shoot_browser()
    if shot is not None:
        print(f"wrote {shot.relative_to(REPO)}")
