"""Live updates: another process writes into a layer and takes holders while the app runs.

No key is pressed: the change feed (watchfiles and ``PRAGMA data_version``) must bring
every change to the screen by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachetui.core.watch import ChangeFeed, ChangeSet, records_for_paths
from cachetui.widgets.format import size
from tests.ui.conftest import loaded, make_app, settle, wait_for

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]

WORKER = r"""
import sys
from cachetui.core import CacheManager
cm = CacheManager.open(sys.argv[1])
m = cm.new(description="external build")
print(m.id, flush=True)
held = []
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "write":
        (m.mount().upper / arg).write_bytes(b"x" * 3_000_000)
    elif cmd == "hold":
        held.append(cm.get(arg))
    elif cmd == "release":
        for ref in held:
            ref.release()
        held.clear()
    elif cmd == "quit":
        break
    print("ok", flush=True)
cm.close()
"""


class Worker:
    def __init__(self, root: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self.mutable_id = self.proc.stdout.readline().strip()
        assert len(self.mutable_id) == 25, self.mutable_id

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def worker_factory() -> Iterator[list[Worker]]:
    workers: list[Worker] = []
    yield workers
    for w in workers:
        w.close()


async def test_other_process_changes_show_without_a_key(store, worker_factory):
    root, ids = store
    app = make_app(root, live=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["old"])
        await pilot.press("space")  # marked; cursor moves to gomod
        cursor = app.ref_tree.cursor_id
        assert cursor == ids["gomod"]
        worker = Worker(root)
        worker_factory.append(worker)
        new = worker.mutable_id

        def row():
            return app.ref_tree.view.rows.get(new) if app.ref_tree.view else None

        await wait_for(pilot, lambda: new in app.ref_tree.nodes, what="the new record")
        assert row().in_use and row().mutable
        # the cursor and the marks stayed on the same records
        assert app.ref_tree.cursor_id == cursor
        assert app.marks == {ids["old"]}
        # a file written in its layer shows as a size change, without a key press
        started = time.monotonic()
        worker.send("write blob")
        await wait_for(pilot, lambda: row().size >= 3_000_000, what="the size change")
        elapsed = time.monotonic() - started
        assert elapsed < 2.0  # the goal is 0.2 s; leave room for a loaded CI machine
        label = app.ref_tree.label_for(new).plain
        assert size(row().size) in label and "in use" in label
        # a holder taken on an existing record by the other process
        worker.send(f"hold {ids['frontend']}")
        await wait_for(pilot, lambda: app.ref_tree.view.rows[ids["frontend"]].in_use, what="in use")
        assert "in use" in app.ref_tree.label_for(ids["frontend"]).plain
        worker.send("release")
        await wait_for(
            pilot, lambda: not app.ref_tree.view.rows[ids["frontend"]].in_use, what="released"
        )
        worker.close()
        await wait_for(pilot, lambda: row() is not None and not row().in_use, what="exit")
        assert app.ref_tree.cursor_id == cursor
        assert app.marks == {ids["old"]}


async def test_pause_holds_updates_until_resumed(store, worker_factory):
    root, _ids = store
    app = make_app(root, live=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("P")
        assert app.paused
        worker = Worker(root)
        worker_factory.append(worker)
        worker.send("write blob")
        await wait_for(pilot, lambda: bool(app.main.updates.held), what="a pending change")
        await pilot.pause(0.3)
        assert worker.mutable_id not in app.ref_tree.view.rows
        await pilot.press("P")
        await wait_for(pilot, lambda: worker.mutable_id in app.ref_tree.nodes, what="resume")
        await wait_for(
            pilot,
            lambda: app.ref_tree.view.rows[worker.mutable_id].size >= 3_000_000,
            what="the size after resume",
        )


async def test_prune_from_another_process_removes_the_row(store):
    from cachetui.core import CacheManager, PruneOptions

    root, ids = store
    app = make_app(root, live=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["old"])
        await settle(pilot)
        with CacheManager.open(root) as other:
            other.prune(PruneOptions(all=True, filters=(f"id=={ids['old']}",)))
        await wait_for(pilot, lambda: ids["old"] not in app.ref_tree.nodes, what="the prune")
        assert app.ref_tree.cursor_id is not None


# -- the change feed itself -------------------------------------------------------------


def test_records_for_paths_maps_the_first_component(tmp_path: Path):
    snaps = tmp_path / "snapshots"
    rid = "a" * 25
    paths = [
        str(snaps / rid / "deep" / "file"),
        str(snaps / rid),
        str(snaps / f"new-{rid}" / "x"),
        str(snaps / f"rm-{rid}"),
        str(snaps / "not-an-id"),
        str(tmp_path / "metadata.db"),
    ]
    assert records_for_paths(snaps, paths) == frozenset({rid})


def test_feed_reports_files_and_metadata_and_stops_promptly(tmp_path: Path):
    from cachetui.core import CacheManager

    root = tmp_path / "store"
    cm = CacheManager.open(root)
    m = cm.new()
    seen: list[ChangeSet] = []
    feed = ChangeFeed(root, seen.append)
    feed.start()
    try:
        time.sleep(0.2)  # let the watcher install its watches
        (m.mount().upper / "f").write_bytes(b"x" * 1000)
        deadline = time.monotonic() + 5
        while not any(m.id in c.records for c in seen):
            assert time.monotonic() < deadline, seen
            time.sleep(0.01)
        sub = m.mount().upper / "sub"
        sub.mkdir()
        (sub / "g").write_bytes(b"y")
        m.release()
        while not any(c.metadata for c in seen):
            assert time.monotonic() < deadline, seen
            time.sleep(0.01)
    finally:
        started = time.monotonic()
        feed.stop()
        assert time.monotonic() - started < 1.5
        assert not feed.running
        cm.close()
    assert ChangeSet(frozenset({"x"})).merge(ChangeSet(metadata=True)) == ChangeSet(
        frozenset({"x"}), True
    )


async def test_demo_store_with_the_simulator(tmp_path: Path):
    from cachetui.demo import build_demo_store, start_simulator, stop_simulator

    root = tmp_path / "demo"
    build_demo_store(root)
    process = start_simulator(root)
    try:
        app = make_app(root, live=True)
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot)
            first = set(app.ref_tree.view.rows)
            await wait_for(
                pilot,
                lambda: app.refreshes > 0 and set(app.ref_tree.view.rows) != first,
                timeout=20,
                what="the simulated build to change the store",
            )
            assert app.is_running
    finally:
        stop_simulator(process)


def test_run_dashboard_starts_and_stops_the_simulator(tmp_path: Path, monkeypatch):
    import cachetui.app as app_module
    import cachetui.demo as demo

    started: list[subprocess.Popen] = []
    real_start = demo.start_simulator

    def start(root: Path) -> subprocess.Popen:
        process = real_start(root)
        started.append(process)
        return process

    monkeypatch.setattr(demo, "start_simulator", start)
    monkeypatch.setattr(app_module.CacheTuiApp, "run", lambda self: 0)
    root = tmp_path / "demo"
    demo.build_demo_store(root)
    assert app_module.run_dashboard(root, simulator=True) == 0
    assert started and started[0].poll() is not None
    assert app_module.run_dashboard(root, read_only=True) == 0


async def test_filter_follows_live_changes(store, worker_factory):
    root, ids = store
    app = make_app(root, live=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("slash", *"inuse")
        await settle(pilot)
        assert ids["frontend"] not in app.ref_tree.nodes
        worker = Worker(root)
        worker_factory.append(worker)
        worker.send(f"hold {ids['frontend']}")
        await wait_for(pilot, lambda: ids["frontend"] in app.ref_tree.nodes, what="now in use")
        worker.send("release")
        await wait_for(pilot, lambda: ids["frontend"] not in app.ref_tree.nodes, what="free again")


async def test_details_follow_a_size_change_under_the_cursor(store, worker_factory):
    """The refresh that brings a new size brings the details of the record under the
    cursor with it: the pane agrees with the row."""
    root, _ids = store
    app = make_app(root, live=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        worker = Worker(root)
        worker_factory.append(worker)
        new = worker.mutable_id
        await wait_for(pilot, lambda: new in app.ref_tree.nodes, what="the new record")
        app.ref_tree.select_id(new)
        await wait_for(pilot, lambda: app.details is not None and app.details.record.id == new)
        worker.send("write blob")
        await wait_for(
            pilot,
            lambda: app.details is not None and app.details.record.size >= 3_000_000,
            what="the details to show the new size",
        )
        assert app.details.record == app.ref_tree.view.rows[new]
        assert size(app.details.record.size) in app.ref_tree.label_for(new).plain
