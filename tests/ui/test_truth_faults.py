"""The screen stays true when something goes wrong underneath it: the demo's simulated
build loses a hold to a force release, the file watcher dies, the store cannot be written.

Each is caused for real: the real simulator process, the watched directory really
replaced, a store really unwritable for the user running the dashboard. Pilot drives it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachetui.core.watch import ChangeFeed, ChangeSet
from cachetui.demo import SIMULATOR_DESCRIPTION_PREFIX, build_demo_store
from cachetui.demo.simulator import start_simulator, stop_simulator
from cachetui.screens.dialogs import ForceReleaseScreen
from tests.ui.conftest import loaded, make_app, settle, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    build_demo_store(root)
    return root


@pytest.fixture
def simulator(demo_root: Path) -> Iterator[object]:
    # Two seconds between writes: a simulated build step holds its layer for 6 to 12 s,
    # long enough to select it and force-release it before it commits.
    process = start_simulator(demo_root, interval=2.0)
    yield process
    stop_simulator(process)


def _holders(root: Path, record_id: str) -> list[int]:
    with sqlite3.connect(f"file:{root / 'metadata.db'}?mode=ro", uri=True) as db:
        return [
            pid for (pid,) in db.execute("SELECT pid FROM holder WHERE record = ?", (record_id,))
        ]


async def test_force_releasing_the_simulated_builds_layer_releases_it(demo_root, simulator):
    """The hold goes (the store says so, not only the screen), the row turns free, the
    message names the process, and the simulated build goes on with its next step."""
    app = make_app(demo_root, live=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)

        def building() -> list[str]:
            view = app.ref_tree.view
            if view is None:
                return []
            return [
                rid
                for rid, row in view.rows.items()
                if row.description.startswith(SIMULATOR_DESCRIPTION_PREFIX)
                and row.mutable
                and row.in_use
            ]

        await wait_for(pilot, building, timeout=30, what="the simulated build's layer")
        layer = building()[0]
        assert _holders(demo_root, layer) == [simulator.pid]
        assert app.ref_tree.select_id(layer)
        await settle(pilot)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ForceReleaseScreen))
        confirm = app.screen
        await pilot.press("y")  # the simulator is alive: a second confirmation
        await wait_for(
            pilot, lambda: "still running" in str(confirm.query_one("#warning").render())
        )
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: any(layer[:12] in note for _, note in app.notes[-3:]),
            what="the force release's result",
        )
        message = next(note for _, note in reversed(app.notes) if layer[:12] in note)
        assert message.startswith(
            f"force-released {layer[:12]} (dropped the hold of pid {simulator.pid} on "
        ), message
        assert "still held" not in message
        assert _holders(demo_root, layer) == []  # released in the store itself
        await wait_for(
            pilot,
            lambda: not app.ref_tree.view.rows[layer].in_use,
            what="the released layer's row to turn free",
        )
        # The build gave its step up (nothing deleted: the layer stays, free, for the user
        # to prune) and goes on: its next step's layer appears.
        await wait_for(
            pilot,
            lambda: any(rid != layer for rid in building()),
            timeout=60,
            what="the simulated build's next step",
        )
        assert simulator.poll() is None, "the simulated build died after losing its hold"
        assert layer in app.ref_tree.view.rows


def _header(app) -> str:
    return str(app.screen.query_one("#header").render())


async def test_a_dead_file_watcher_says_so_retries_and_recovers(store):
    """The snapshots directory is moved away under a live dashboard (the watch dies with
    it: inotify goes on watching the moved directory), then put back. The header says
    why live updates stopped while they are, and files written afterwards show again."""
    root, ids = store
    snapshots = root / "snapshots"
    app = make_app(root, live=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        await wait_for(pilot, lambda: _header(app).startswith("● live"), what="live")
        moved = root / "snapshots.moved"
        snapshots.rename(moved)
        stopped = "✕ live updates stopped: file watcher: the snapshots directory is missing"
        await wait_for(pilot, lambda: _header(app).startswith(stopped), what="the stop shown")
        assert "(retrying)" in _header(app)
        assert any(
            severity == "error" and note.startswith("live updates stopped: ")
            for severity, note in app.notes
        )
        # A retry that fails again changes nothing on screen and says nothing new.
        await pilot.pause(1.5)
        assert _header(app).startswith(stopped)
        assert sum(note.startswith("live updates stopped") for _, note in app.notes) == 1
        moved.rename(snapshots)  # back: the next retry watches it again
        await wait_for(pilot, lambda: _header(app).startswith("● live"), what="the recovery")
        assert "live updates running again" in [note for _, note in app.notes]
        # The new watch sees writes: a layer that grows shows its new size by itself (the
        # fixture's sizes are made up: the layer held a few kB on disk before).
        assert app.ref_tree.view.rows[ids["local"]].size < 5_000_000
        (snapshots / ids["local"] / "grown").write_bytes(b"x" * 5_000_000)
        await wait_for(
            pilot,
            lambda: app.ref_tree.view.rows[ids["local"]].size >= 5_000_000,
            what="the write after the recovery to show",
        )


def test_the_change_feed_notices_its_directory_replaced(tmp_path):
    """Replaced by a copy (a restore) with hardly a moment without the directory: inotify
    says nothing about it. The feed says so, watches the new directory, and reports it."""
    root = tmp_path / "store"
    layer = "a" * 25
    (root / "snapshots" / layer).mkdir(parents=True)
    statuses: list[str | None] = []
    changes: list[ChangeSet] = []
    feed = ChangeFeed(root, changes.append, on_status=statuses.append, retry_delays=(0.2,))
    with feed:
        _until(lambda: feed.running)
        time.sleep(0.5)  # the first watch is up
        copy = root / "snapshots.restored"
        shutil.copytree(root / "snapshots", copy)
        os.rename(root / "snapshots", root / "snapshots.old")  # two renames in a row:
        os.rename(copy, root / "snapshots")  # the feed's checks fall in the gap hardly ever
        _until(lambda: None in statuses, what="the watch on the new directory")
        assert statuses[-1] is None and len(statuses) == 2
        assert statuses[0] in (
            "file watcher: the snapshots directory was replaced",
            "file watcher: the snapshots directory is missing",  # it did fall in the gap
        )
        (root / "snapshots" / layer / "out.bin").write_bytes(b"x" * 1000)
        _until(lambda: any(layer in c.records for c in changes), what="the write reported")


def _until(predicate, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)
