"""Snapshot tests (pytest-textual-snapshot): fixed store, ids, clock, disk and size.

The stores live at fixed paths (mount paths are on screen), live updates are off and
no toast is on screen when the picture is taken. Update with ``--snapshot-update``.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from textual.widgets import Input

from cachetui.app import CacheTuiApp
from cachetui.core import CacheManager
from tests.ui.conftest import loaded, make_app, settle, wait_for
from tests.ui.store_fixture import T0, FixedClock, build_fixture_store, counter_ids

SNAP_ROOT = Path("/tmp/cachetui-snapshots")


@contextmanager
def fixed_root(name: str) -> Iterator[Path]:
    """A store at a fixed path (mount paths are on screen), locked against another run."""
    SNAP_ROOT.mkdir(parents=True, exist_ok=True)
    root = SNAP_ROOT / name.replace("[", "-").replace("]", "")
    with open(SNAP_ROOT / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(root, ignore_errors=True)
        try:
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def snap_store(request: pytest.FixtureRequest) -> Iterator[tuple[Path, dict[str, str]]]:
    with fixed_root(request.node.name) as root:
        yield root, build_fixture_store(root)


def no_blink(app: CacheTuiApp) -> None:
    for widget in app.screen.query(Input):
        widget.cursor_blink = False


async def _expand(pilot, app: CacheTuiApp, ids: dict[str, str]) -> None:
    app.ref_tree.select_id(ids["pip"])
    await settle(pilot)


def test_main_screen(snap_compare, snap_store):
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await _expand(pilot, app, ids)
        app.ref_tree.select_id(ids["old"])
        await pilot.press("space")
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(130, 36), run_before=run_before)


def test_details_pane(snap_compare, snap_store):
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await _expand(pilot, app, ids)
        await wait_for(pilot, lambda: app.details and app.details.record.id == ids["pip"])
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(130, 36), run_before=run_before)


def test_prune_confirmation(snap_compare, snap_store):
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        app.ref_tree.select_id(ids["old"])
        await pilot.press("space", "space", "d")
        await wait_for(pilot, lambda: len(app.screen_stack) > 1)
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(120, 34), run_before=run_before)


def test_policy_preview(snap_compare, snap_store):
    root, _ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: len(app.screen_stack) > 1)
        screen = app.screen
        no_blink(app)
        screen.query_one("#filters", Input).value = "type==regular"
        screen.query_one("#keep", Input).value = "7d"
        screen.action_preview()
        await wait_for(pilot, lambda: screen.plan is not None)
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(120, 40), run_before=run_before)


def test_help(snap_compare, snap_store):
    root, _ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: len(app.screen_stack) > 1)
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(120, 34), run_before=run_before)


def test_filter_error(snap_compare, snap_store):
    root, _ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await pilot.press("slash")
        no_blink(app)
        await pilot.press(*"type==regular,inuse,size>")
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(120, 34), run_before=run_before)


def test_empty_store(snap_compare):
    async def run_before(pilot):
        await loaded(pilot)
        await settle(pilot)

    with fixed_root("empty") as root:
        assert snap_compare(make_app(root), terminal_size=(100, 24), run_before=run_before)


def test_small_terminal(snap_compare, snap_store):
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await _expand(pilot, app, ids)

    assert snap_compare(make_app(root), terminal_size=(80, 24), run_before=run_before)


def test_read_only_footer(snap_compare, snap_store):
    root, _ids = snap_store

    async def run_before(pilot):
        await loaded(pilot)

    app = make_app(root, read_only=True)
    assert snap_compare(app, terminal_size=(120, 30), run_before=run_before)


# -- 80x24: every screen fits, or scrolls with its buttons visible ------------------------


def test_policy_after_preview_80x24(snap_compare, snap_store):
    """After Preview, the progress bar's place and the buttons are still on screen."""
    root, _ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: len(app.screen_stack) > 1)
        screen = app.screen
        no_blink(app)
        screen.query_one("#all").value = True
        await settle(pilot)  # the checkbox's change resets the plan: let it land first
        screen.action_preview()
        await wait_for(pilot, lambda: screen.plan is not None)
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(80, 24), run_before=run_before)


def test_help_80x24(snap_compare, snap_store):
    root, _ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: len(app.screen_stack) > 1)
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(80, 24), run_before=run_before)


def test_tree_six_levels_deep_80x24(snap_compare, snap_store):
    """The fixed columns start at the same place on every row, six levels down too."""
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        app.ref_tree.select_id(ids["strip"])
        app.query_one("#details").display = False
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(80, 24), run_before=run_before)


def test_filter_with_deep_matches_80x24(snap_compare, snap_store):
    """Every match is revealed (ancestors dimmed as context), with the count."""
    root, _ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await pilot.press("i", "slash")  # the details pane off: room for the whole chain
        no_blink(app)
        await pilot.press(*"description~=strip")
        await wait_for(pilot, lambda: app.ref_tree.matches is not None)
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(80, 24), run_before=run_before)


def test_read_only_header_80x24(snap_compare, snap_store):
    root, _ids = snap_store

    async def run_before(pilot):
        await loaded(pilot)

    app = make_app(root, read_only=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_sorted_by_subtree_size(snap_compare, snap_store):
    """The subtree columns at the default size, sorted by subtree size (``s``)."""
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await _expand(pilot, app, ids)
        await pilot.press("s")
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(130, 36), run_before=run_before)


def test_sorted_by_subtree_size_reversed_80x24(snap_compare, snap_store):
    """``s`` twice: smallest subtree first; the columns that fit 80 columns."""
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await _expand(pilot, app, ids)
        await pilot.press("s", "s")
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(80, 24), run_before=run_before)


def test_missing_and_broken_records_80x24(snap_compare, snap_store):
    """A layer directory gone from disk: its record says missing, every record above it
    broken (the core's health, the same value as du's FLAGS), and the details say which
    directory is gone."""
    root, ids = snap_store
    shutil.rmtree(root / "snapshots" / ids["build"])  # three records sit above it

    async def run_before(pilot):
        app = await loaded(pilot)
        app.ref_tree.select_id(ids["strip"])  # reveals the whole chain
        await settle(pilot)
        app.ref_tree.select_id(ids["build"])
        await wait_for(pilot, lambda: app.details and app.details.record.id == ids["build"])
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(80, 24), run_before=run_before)


# -- whole chains: marked with x, pruned in one confirmation ------------------------------


async def _chain_marked(pilot, app: CacheTuiApp, ids: dict[str, str]) -> None:
    app.ref_tree.select_id(ids["build"])
    await settle(pilot)
    await pilot.press("x")
    await wait_for(pilot, lambda: len(app.marks) == 4, what="the chain's marks")
    app.clear_notifications()
    await settle(pilot)


def test_chain_marked(snap_compare, snap_store):
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await _chain_marked(pilot, app, ids)

    assert snap_compare(make_app(root), terminal_size=(130, 36), run_before=run_before)


def test_chain_marked_80x24(snap_compare, snap_store):
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await pilot.press("i")  # the details pane off: room for the chain
        await _chain_marked(pilot, app, ids)

    assert snap_compare(make_app(root), terminal_size=(80, 24), run_before=run_before)


async def _chain_confirmation(pilot, app: CacheTuiApp, ids: dict[str, str]) -> None:
    await _chain_marked(pilot, app, ids)
    await pilot.press("d")
    await wait_for(pilot, lambda: len(app.screen_stack) > 1, what="the confirmation")
    await settle(pilot)


def test_chain_prune_confirmation(snap_compare, snap_store):
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await _chain_confirmation(pilot, app, ids)

    assert snap_compare(make_app(root), terminal_size=(120, 34), run_before=run_before)


def test_chain_prune_confirmation_80x24(snap_compare, snap_store):
    root, ids = snap_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await _chain_confirmation(pilot, app, ids)

    assert snap_compare(make_app(root), terminal_size=(80, 24), run_before=run_before)


# -- what tells records apart: labels, cache mounts, apparent size ------------------------


def test_labels_cache_mount_and_apparent_size_columns(snap_compare, snap_store):
    """A tree 200 columns wide: the apparent size where it differs from the disk usage
    (a sparse file), a cache mount's id and sharing mode, and labels."""
    root, ids = snap_store
    clock = FixedClock(T0 - 3 * 3600)
    with CacheManager.open(root, clock=clock, id_factory=counter_ids(iter(["mavenapi"]))) as cm:
        cm.set_labels(ids["old"], {"team": "release"})
        cm.set_labels(ids["build"], {"team": "infra", "tier": "ci"})
        maven = cm.get_cache_mount("maven-api", target="/root/.m2", sharing="locked")
        with open(maven.mount().upper / "sparse", "wb") as fh:
            fh.truncate(50_000_000)
        maven.release()

    async def run_before(pilot):
        app = await loaded(pilot)
        await _expand(pilot, app, ids)
        app.ref_tree.select_id(ids["build"])
        await wait_for(pilot, lambda: app.details and app.details.record.id == ids["build"])
        await settle(pilot)

    assert snap_compare(make_app(root), terminal_size=(200, 40), run_before=run_before)
