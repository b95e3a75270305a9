"""The operator's view in the dashboard: plain search beside the filter language, labels
and cache mounts on screen and in the filter, the effective age in the details pane and
in the GC preview's "why is it still here", and the apparent size where it differs.
Real stores on disk, Pilot."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from cachetui.core import CacheManager
from cachetui.screens.gcpreview import GCPreviewScreen
from tests.ui.conftest import loaded, make_app, settle, wait_for

pytestmark = pytest.mark.anyio


async def _filter(pilot, app, text: str) -> str:  # type: ignore[no-untyped-def]
    """Type ``text`` into ``/`` and return the count line once the match landed."""
    await pilot.press("slash")
    bar = app.query_one("#filter")
    bar.value = ""
    await settle(pilot)
    await pilot.press(*text)
    await wait_for(pilot, lambda: app.main.filter_text == text.strip() or "^" in _line(app))
    await settle(pilot)
    return _line(app)


def _line(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.query_one("#filter-error", Static).render())


async def test_plain_words_search_ids_and_descriptions(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        line = await _filter(pilot, app, "go build")
        assert app.ref_tree.matches == {ids["build"]}
        assert "search: 1 of 12 records match" in line
        # case-insensitive, every word anywhere in the id or the description
        line = await _filter(pilot, app, "RUN GO")
        assert app.ref_tree.matches == {ids["build"], ids["test"]}
        # a piece of an id
        fragment = ids["strip"][5:14]
        await _filter(pilot, app, fragment)
        assert app.ref_tree.matches == {ids["strip"]}


async def test_the_filter_language_stays_available_and_validated(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        line = await _filter(pilot, app, "type==frontend")
        assert app.ref_tree.matches == {ids["frontend"]}
        assert "filter: 1 of 12" in line
        # a bare key of the language is the key, not a word to search for
        await _filter(pilot, app, "mutable")
        assert ids["gomod"] in (app.ref_tree.matches or ())
        assert ids["apt"] not in (app.ref_tree.matches or ())
        # a typo in an expression is an error with a caret, never a silent search
        line = await _filter(pilot, app, "type==frontnd")
        assert "^" in line and "record type" in line


async def test_label_and_cache_mount_filters_match_on_screen(store):
    root, ids = store
    with CacheManager.open(root) as cm:
        cm.set_labels(ids["old"], {"team": "infra"})
        cm.set_labels(ids["gomod"], {"team": "web"})
        m2 = cm.get_cache_mount("maven-api", target="/root/.m2", sharing="locked")
        m2.release()
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        line = await _filter(pilot, app, "label.team==infra")
        assert app.ref_tree.matches == {ids["old"]}
        assert "filter: 1 of 13" in line
        await _filter(pilot, app, "label.team")
        assert app.ref_tree.matches == {ids["old"], ids["gomod"]}
        await _filter(pilot, app, "cache-id==maven-api,sharing==locked")
        assert app.ref_tree.matches == {m2.id}
        await _filter(pilot, app, "target==/root/.m2")
        assert app.ref_tree.matches == {m2.id}


async def test_details_show_labels_cache_mount_and_apparent_size(store):
    root, ids = store
    with CacheManager.open(root) as cm:
        cm.set_labels(ids["old"], {"team": "infra", "tier": "release"})
        ref = cm.get_cache_mount("maven-api", target="/root/.m2", sharing="private")
        with open(ref.mount().upper / "sparse", "wb") as fh:
            fh.truncate(50_000_000)
        ref.release()
    app = make_app(root)
    async with app.run_test(size=(130, 40)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["old"])
        await wait_for(pilot, lambda: app.details and app.details.record.id == ids["old"])
        text = str(app.query_one("#details", Static).render())
        assert "Labels     team=infra, tier=release" in text
        assert "apparent" not in text  # the same bytes either way: nothing to say
        app.ref_tree.select_id(ref.id)
        await wait_for(pilot, lambda: app.details and app.details.record.id == ref.id)
        await settle(pilot)
        text = str(app.query_one("#details", Static).render())
        assert "Cache      id maven-api · target /root/.m2 · sharing private" in text
        # a sparse file: 50MB long, next to nothing on disk
        assert "exec.cachemount · 4.096kB · apparent 50MB" in text or (
            "· apparent 50MB" in text and app.details.record.size < 1_000_000
        )


async def test_a_wide_tree_shows_labels_cache_mounts_and_apparent_size_as_columns(store):
    root, ids = store
    with CacheManager.open(root) as cm:
        cm.set_labels(ids["old"], {"team": "infra"})
        ref = cm.get_cache_mount("maven-api", target="/root/.m2", sharing="locked")
        with open(ref.mount().upper / "sparse", "wb") as fh:
            fh.truncate(50_000_000)
        ref.release()
    app = make_app(root)
    async with app.run_test(size=(210, 40)) as pilot:
        await loaded(pilot)
        title = str(app.query_one("#columns", Static).render())
        assert "APPARENT" in title and "CACHE MOUNT" in title and "LABELS" in title
        await wait_for(pilot, lambda: "maven-api (locked)" in _screen(app))
        lines = _screen(app).splitlines()
        [mount_line] = [line for line in lines if "maven-api (locked)" in line]
        assert "50MB" in mount_line  # the sparse file's length beside its few kB on disk
        [old_line] = [line for line in lines if ids["old"][:10] in line and "RUN" in line]
        assert "team=infra" in old_line
    # narrower, the description keeps its width: the three columns give way first
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        title = str(app.query_one("#columns", Static).render())
        assert "LABELS" not in title and "CACHE MOUNT" not in title


def _screen(app) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(
        "".join(segment.text for segment in strip)
        for strip in app.screen._compositor.render_strips()
    )


async def test_details_show_the_effective_age_from_below(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 40)) as pilot:
        await loaded(pilot)
        # alpine was used 2 hours ago; pip, below it, 20 minutes ago
        app.ref_tree.select_id(ids["alpine"])
        await wait_for(pilot, lambda: app.details and app.details.record.id == ids["alpine"])
        row = app.details.record
        assert row.effective_by == ids["pip"]
        text = str(app.query_one("#details", Static).render())
        assert f"Eff. age   20 minutes ago: {ids['pip']} below it was used then" in text
        # a leaf's own use is its effective age: no line
        app.ref_tree.select_id(ids["old"])
        await wait_for(pilot, lambda: app.details and app.details.record.id == ids["old"])
        assert "Eff. age" not in str(app.query_one("#details", Static).render())


async def test_gc_preview_says_the_effective_age_of_a_parent(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["alpine"])
        await settle(pilot)
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, GCPreviewScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.preview is not None)
        await settle(pilot)
        why = str(screen.query_one("#gc-why", Static).render())
        assert f"Effective age: 20 minutes ago (the newest use below it, {ids['pip']})" in why
        assert "its own last use (2 hours ago)" in why


def test_the_help_says_how_a_search_is_told_from_a_filter() -> None:
    from cachetui.screens.help import KEYS

    slash = " ".join(what for _section, key, what, _w in KEYS if key in ("/", ""))
    assert "search words in ids and descriptions" in slash
    assert "= ! ~ , or a key alone make a filter" in slash


def test_the_service_plans_and_prunes_a_chain_through_the_core(store) -> None:
    from cachetui.service import CacheService
    from tests.ui.store_fixture import FixedClock, fixed_disk_stat

    root, ids = store
    service = CacheService(root, clock=FixedClock(), disk_stat_fn=fixed_disk_stat)
    try:
        service.load()
        blocked = service.plan_chain([ids["alpine"]])
        assert blocked.chains == (ids["alpine"],)
        assert dict(blocked.refused)[ids["pip"]] == "it is held by pid 4242 on ci-runner-7"
        plan = service.plan_chain([ids["build"]])
        assert plan.refused == () and plan.chains == (ids["build"],)
        assert plan.ids == (ids["strip"], ids["dist"], ids["test"], ids["build"])
        assert plan.freed == 11_000_000
        done = service.prune_chain(list(plan.ids))
        assert done.ids == plan.ids and done.refused == () and done.gone == ()
        assert not (root / "snapshots" / ids["build"]).exists()
        assert (root / "snapshots" / ids["pip"]).exists()
    finally:
        service.close()
