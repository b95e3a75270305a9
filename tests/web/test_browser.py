"""The dashboard in a real browser: ``cachetui serve`` driven by Chromium.

Each test starts ``cachetui serve`` as a subprocess on a free port, opens the page in
Debian's Chromium and reads the terminal the page draws. Another process (this test)
writes into a layer while the page is open; nothing is pressed for that change to show.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachetui.core import CacheManager
from cachetui.core.refs import MutableRef
from tests.web.browser import DashboardPage, chromium, dashboards_on, need_browser, served

UNITS = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = need_browser()
    with chromium(sync_api) as context:
        yield context


class Store:
    """A store with a committed base layer and a mutable layer this process keeps open."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cm = CacheManager.open(root)
        base = self.cm.new(description="browser base layer")
        (base.mount().upper / "base.bin").write_bytes(b"b" * 1_000_000)
        committed = base.commit()
        committed.finalize()
        self.base_id = committed.id
        committed.release()
        self.live: MutableRef = self.cm.new(description="browser live layer")
        (self.live.mount().upper / "start.bin").write_bytes(b"s" * 200_000)

    def close(self) -> None:
        self.live.release()
        self.cm.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    built = Store(tmp_path / "store")
    try:
        yield built
    finally:
        built.close()


def row_size(row: str | None) -> float | None:
    """The size column of a tree row, in bytes (None when the row is not on screen)."""
    if row is None:
        return None
    found = re.search(r"(\d+(?:\.\d+)?) ?(B|kB|MB|GB)\b", row)  # "1.008MB", as the CLI
    return None if found is None else float(found.group(1)) * UNITS[found.group(2)]


def details_id(lines: list[str]) -> str | None:
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "ID":
            return parts[1]
    return None


def test_dashboard_in_a_browser(browser: Any, store: Store, tmp_path: Path) -> None:
    live_id = store.live.id
    with served(store.root, log=tmp_path / "serve.log") as url:
        page = DashboardPage.open(browser, url)
        # The page loads; the totals bar and both records of the tree appear.
        lines = page.wait_for(
            lambda ls: (
                "Total" in ls[1]  # line 0 is the header: live state and the store
                and "Records 2" in ls[1]
                and page.row(ls, store.base_id)
                and page.row(ls, live_id)
            ),
            "the totals and the tree",
        )
        assert "live" in lines[0] and str(store.root) in lines[0]
        assert "Reclaimable" in lines[1] and "Disk free" in lines[1]
        # The tab runs its own dashboard process on the server (gone when the server stops).
        assert len(dashboards_on(store.root)) == 1
        # Sorted by size: the 1 MB base first, the cursor on it, its details below.
        page.wait_for(lambda ls: details_id(ls) == store.base_id, "the details of the base")
        before = row_size(page.row(page.lines(), live_id))
        assert before is not None and before < 1_000_000, page.text()

        # A key press in the browser moves the cursor: the details follow it.
        page.press("ArrowDown")
        page.wait_for(lambda ls: details_id(ls) == live_id, "the cursor to move down")

        # A file written into the layer by this (another) process changes the size shown.
        (store.live.mount().upper / "grown.bin").write_bytes(b"g" * 3_000_000)
        lines = page.wait_for(
            lambda ls: (row_size(page.row(ls, live_id)) or 0) >= 3_000_000,
            "the new size of the written layer",
        )
        # The cursor stayed on its record although the sort moved it.
        assert details_id(lines) == live_id

        shot = tmp_path / "browser.png"
        page.page.screenshot(path=str(shot))
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        page.page.close()


def test_read_only_in_a_browser(browser: Any, store: Store, tmp_path: Path) -> None:
    with served(store.root, "--read-only", log=tmp_path / "serve.log") as url:
        page = DashboardPage.open(browser, url)
        lines = page.wait_for(
            lambda ls: (
                page.row(ls, store.base_id) is not None
                and "Quit" in ls[-1]
                and details_id(ls) is not None
            ),
            "the tree, the details and the footer",
        )
        footer = lines[-1]
        for write_key in ("Prune", "Commit", "Hold", "Release"):
            assert write_key not in footer, footer
        # "d" opens the prune confirmation when writes are on; read-only it does nothing.
        selected = details_id(lines)
        assert selected is not None
        page.press("d")
        page.page.wait_for_timeout(500)
        after = page.lines()
        assert not any("y: prune" in line for line in after), "\n".join(after)
        assert details_id(after) == selected and after[-1] == footer
        page.page.close()
    with CacheManager.open(store.root, read_only=True) as cm:
        assert {row.id for row in cm.disk_usage()} == {store.base_id, store.live.id}
