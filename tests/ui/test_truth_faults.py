"""The screen stays true when something goes wrong underneath it: the demo's simulated
build loses a hold to a force release, the file watcher dies, the store cannot be written.

Each is caused for real: the real simulator process, the watched directory really
replaced, a store really unwritable for the user running the dashboard. Pilot drives it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

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
