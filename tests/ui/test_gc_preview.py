"""The GC list screen (``g``): the tier-by-tier preview and "why is this still here?".

Snapshots (fixed store, ids, clock and disk) at 120x40 and 80x24, and Pilot checks that
what the screen says is the core's own dry run for the same list.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cachetui.screens.gcpreview import GCPreviewScreen, render_tiers, render_why
from cachetui.service import CacheService
from tests.ui.conftest import loaded, make_app, settle, wait_for
from tests.ui.store_fixture import FixedClock, build_fixture_store, fixed_disk_stat
from tests.ui.test_snapshots import fixed_root, no_blink


@pytest.fixture
def gc_store(request: pytest.FixtureRequest) -> Iterator[tuple[Path, dict[str, str]]]:
    with fixed_root(request.node.name) as root:
        yield root, build_fixture_store(root)


async def _open_gc(pilot, app, record_id: str) -> GCPreviewScreen:
    app.ref_tree.select_id(record_id)
    await settle(pilot)
    await pilot.press("g")
    await wait_for(pilot, lambda: isinstance(app.screen, GCPreviewScreen))
    screen = app.screen
    assert isinstance(screen, GCPreviewScreen)
    await wait_for(pilot, lambda: screen.preview is not None)
    no_blink(app)
    await settle(pilot)
    return screen


def test_gc_tier_preview(snap_compare, gc_store):
    root, ids = gc_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await _open_gc(pilot, app, ids["old"])

    assert snap_compare(make_app(root), terminal_size=(120, 40), run_before=run_before)


def test_gc_why_pane_80x24(snap_compare, gc_store):
    root, ids = gc_store

    async def run_before(pilot):
        app = await loaded(pilot)
        await _open_gc(pilot, app, ids["local"])

    assert snap_compare(make_app(root), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.anyio
async def test_screen_shows_the_cores_dry_run(store: tuple[Path, dict[str, str]]) -> None:
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        screen = await _open_gc(pilot, app, ids["local"])
        shown_tiers = str(screen.query_one("#gc-tiers").render())
        shown_why = str(screen.query_one("#gc-why").render())
    # The same list, planned again by a separate service over the same store.
    service = CacheService(root, read_only=True, clock=FixedClock(), disk_stat_fn=fixed_disk_stat)
    try:
        again = service.plan_gc()
    finally:
        service.close()
    assert shown_tiers == str(render_tiers(again))
    assert shown_why == str(render_why(again, ids["local"], service.now()))
    # The local context (source.local, used 2 days ago) goes in tier 1: 48h have passed.
    verdicts = again.result.fate(ids["local"])
    assert verdicts == [(0, None)]
    assert "Tier 1: would remove it" in shown_why
    # The held pip layer stays in every tier, and the screen says who holds it.
    held = again.result.fate(ids["pip"])
    assert [reason.kind for _, reason in held if reason] == ["held"] * 4
    assert "ci-runner-7" in held[0][1].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_refused_policy_file_is_shown_not_raised(
    store: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, ids = store
    bad = tmp_path / "buildkitd.toml"
    bad.write_text('[[worker.oci.gcpolicy]]\n  all = true\n  keepduration = "1h"\n')
    app = make_app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        screen = await _open_gc(pilot, app, ids["old"])
        screen.query_one("#gc-policy").value = str(bad)  # type: ignore[attr-defined]
        screen.action_load()
        await wait_for(pilot, lambda: "keepduration" in str(screen.query_one("#gc-tiers").render()))
        text = str(screen.query_one("#gc-tiers").render())
        assert f"{bad}:3: error: unknown key 'keepduration'" in text


@pytest.mark.anyio
async def test_the_last_runs_are_listed(store: tuple[Path, dict[str, str]]) -> None:
    from cachetui.core import CacheManager, GCRunInfo
    from tests.ui.store_fixture import T0

    root, ids = store
    with CacheManager.open(root) as cm:
        cm.record_gc_run(GCRunInfo(T0 - 3600, 1.25, "default", "interval", 4, 3, 12_000_000))
    app = make_app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        screen = await _open_gc(pilot, app, ids["old"])
        text = str(screen.query_one("#gc-tiers").render())
    assert "2026-09-21 13:13 UTC  interval: removed 3 records (12MB) in 1.2s" in text
