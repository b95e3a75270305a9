"""The subtree columns and the sorts: totals, share, item count, every sort key and its
reversal, the layout at 80x24 and at the default size, and totals kept by deltas."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from cachetui.app import CacheTuiApp
from cachetui.subtree import Subtrees
from cachetui.widgets.columns import MIN_DESC, Layout, percent, share_bar
from cachetui.widgets.sorting import SORTS, Sort
from tests.ui.conftest import loaded, make_app, settle, wait_for

pytestmark = pytest.mark.anyio


def top_level(app: CacheTuiApp) -> list[str]:
    return [node.data for node in app.ref_tree.root.children]


def screen_lines(app: CacheTuiApp) -> list[str]:
    """What the terminal shows, one string per line."""
    return [
        "".join(segment.text for segment in strip)
        for strip in app.screen._compositor.render_strips()
    ]


def header(app: CacheTuiApp) -> str:
    return str(app.query_one("#columns", Static).render())


def row_line(app: CacheTuiApp, record_id: str) -> str:
    shown = record_id[: app.ref_tree.columns.min_id - 1]
    lines = [line for line in screen_lines(app) if shown in line]
    assert lines, f"{record_id} is not on screen"
    return lines[0]


# -- the columns ------------------------------------------------------------------------


async def test_subtree_total_share_and_items_per_row(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["pip"])
        await settle(pilot)
        view = app.service.view
        assert view is not None
        total = view.totals.total
        # alpine's subtree: itself and the eight records below it
        below = [i for i in view.rows if ids["alpine"] in view.ancestors(i)]
        assert len(below) == 8
        expected = sum(view.rows[i].size for i in (ids["alpine"], *below))
        assert view.subtree_size(ids["alpine"]) == expected
        assert view.subtree_count(ids["alpine"]) == 9
        line = row_line(app, ids["alpine"])
        assert "470.9MB" in line and percent(expected / total) in line
        assert " 9 " in line
        # a leaf's subtree is itself
        assert view.subtree_size(ids["gomod"]) == view.rows[ids["gomod"]].size
        assert view.subtree_count(ids["gomod"]) == 1
        # the details pane says the same numbers
        app.ref_tree.select_id(ids["alpine"])
        await wait_for(pilot, lambda: app.details and app.details.record.id == ids["alpine"])
        assert app.details.subtree_size == expected and app.details.subtree_count == 9


@pytest.mark.parametrize("size", [(130, 36), (80, 24), (100, 30), (160, 40)])
async def test_fixed_columns_line_up_at_every_depth(store, size):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["strip"])  # six levels down
        await settle(pilot)
        title = header(app)
        layout = app.ref_tree.columns
        assert layout.has("size") and layout.has("subtree") and layout.has("state")
        # the right edge of the SUBTREE title is the right edge of every row's subtree
        edge = title.index("SUBTREE") + len("SUBTREE")
        view = app.service.view
        assert view is not None
        shown = 0
        for record_id in app.ref_tree.nodes:
            try:
                line = row_line(app, record_id)
            except AssertionError:
                continue  # scrolled out of sight
            shown += 1
            from cachetui.widgets.format import size as fmt

            value = fmt(view.subtree_size(record_id))
            # the screen's line starts one cell left of the header's text (its padding)
            assert line[: edge + 1].endswith(" " + value), (record_id, line, title)
        assert shown >= 6
        for line in screen_lines(app):
            assert len(line) == size[0]


@pytest.mark.parametrize("width", range(60, 200, 7))
def test_layout_keeps_the_description_readable(width):
    for depth in (0, 2, 6):
        layout = Layout.for_width(width, depth)
        used = 4 + layout.name + sum(w + 1 for _, w in layout.columns) + 2
        # the sizes and the state never go; the description keeps its share
        assert layout.has("size") and layout.has("subtree") and layout.has("state")
        if width >= 80 and depth <= 2:
            assert width - used >= MIN_DESC, (width, depth, layout)
        assert layout.id_width(depth) >= layout.min_id
        assert layout.name >= layout.guide * depth + layout.min_id


def test_layout_drops_columns_in_order_as_the_terminal_narrows():
    wide = Layout.for_width(149)
    assert [s.key for s, _ in wide.columns] == [
        "size", "subtree", "share", "items", "state", "type", "last", "uses",
    ]  # fmt: skip
    wider = Layout.for_width(200)
    assert [s.key for s, _ in wider.columns][-3:] == ["apparent", "cache", "labels"]
    assert wide.width_of("share") >= 11  # bar and percent
    narrow = Layout.for_width(80, 2)
    assert not narrow.has("type") and not narrow.has("items")
    assert narrow.has("last")
    middle = Layout.for_width(100, 2)
    assert middle.has("share") and middle.width_of("share") == 6  # percent only


def test_share_bar_and_percent():
    assert share_bar(0.0, 5) == "     "
    assert share_bar(1.0, 5) == "█████"
    assert share_bar(0.5, 4) == "██  "
    assert share_bar(0.55, 4) == "██▎ "  # 17.6 of 32 eighths
    assert percent(0.526) == "52.6%" and percent(0.00001) == "<0.1%" and percent(0) == "0.0%"


# -- the sorts ---------------------------------------------------------------------------

# The fixture's top level: old 730 MB alone; alpine 8 MB with 463 MB below it; gomod
# 187 MB; frontend 1.25 MB. Last used: frontend 5 minutes ago, alpine 2 hours, gomod 6
# days, old a month. Uses: frontend 21, alpine 14, gomod 2, old 1.
ORDERS = {
    "s": ("subtree", ["old", "alpine", "gomod", "frontend"], "▼ SUBTREE"),
    "S": ("size", ["old", "gomod", "alpine", "frontend"], "▼ SIZE"),
    "M": ("last used", ["frontend", "alpine", "gomod", "old"], "LAST USED ▼"),
    "C": ("uses", ["frontend", "alpine", "gomod", "old"], "▼USES"),
    "n": ("name", ["frontend", "alpine", "gomod", "old"], "DESCRIPTION ▲"),
}


def test_every_sort_has_a_key_and_a_help_line():
    from cachetui.screens.help import KEYS

    keys = {spec.key for spec in SORTS}
    assert keys == set(ORDERS)
    helped = {key for _section, key, _what, _writes in KEYS}
    assert keys <= helped


@pytest.mark.parametrize("key", list(ORDERS))
async def test_sort_key_and_its_reversal(store, key):
    root, ids = store
    kind, order, title = ORDERS[key]
    app = make_app(root)
    async with app.run_test(size=(160, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["apt"])  # a record below the top level
        await settle(pilot)
        if key == "S":  # the default: press another first, so S starts it afresh
            await pilot.press("n")
        await pilot.press(key)
        await settle(pilot)
        assert app.ref_tree.sort == Sort(kind)
        assert top_level(app) == [ids[name] for name in order]
        assert title in header(app)
        assert f"Sort {Sort(kind).label}" in str(app.query_one("#totals", Static).render())
        assert app.ref_tree.cursor_id == ids["apt"]
        # the same key again: the other way round
        await pilot.press(key)
        await settle(pilot)
        assert app.ref_tree.sort == Sort(kind, reverse=True)
        assert top_level(app) == [ids[name] for name in reversed(order)]
        flipped = title.replace("▼", "△").replace("▲", "▼").replace("△", "▲")
        assert flipped in header(app)
        assert app.ref_tree.cursor_id == ids["apt"]
        # and once more: back to the natural direction
        await pilot.press(key)
        await settle(pilot)
        assert top_level(app) == [ids[name] for name in order]


async def test_sort_applies_below_the_top_level_too(store):
    root, ids = store
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        app.ref_tree.select_id(ids["apt"])
        await settle(pilot)
        alpine = app.ref_tree.nodes[ids["alpine"]]
        assert [c.data for c in alpine.children] == [ids["apt"], ids["local"]]
        await pilot.press("S")  # own size is on: again, smallest first
        await settle(pilot)
        alpine = app.ref_tree.nodes[ids["alpine"]]
        assert [c.data for c in alpine.children] == [ids["local"], ids["apt"]]
        assert alpine.is_expanded and app.ref_tree.cursor_id == ids["apt"]


# -- kept by deltas --------------------------------------------------------------------------


async def test_subtree_totals_follow_a_growing_layer_by_deltas(store):
    root, ids = store
    app = make_app(root, live=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("s")  # by subtree size
        app.ref_tree.select_id(ids["local"])
        await settle(pilot)
        view = app.service.view
        assert view is not None
        before = {i: view.subtree_size(i) for i in (ids["alpine"], ids["local"], ids["old"])}
        assert top_level(app)[:2] == [ids["old"], ids["alpine"]]
        grown = 400_000_000
        (root / "snapshots" / ids["local"] / "big").write_bytes(b"x" * grown)

        def grew() -> bool:
            v = app.service.view
            # the watcher may report the file while it is still being written
            return v is not None and v.rows[ids["local"]].size >= grown

        await wait_for(pilot, grew, what="the write to reach the subtree totals")
        await settle(pilot)
        view = app.service.view
        assert view is not None
        added = view.rows[ids["local"]].size - 2_400_000
        assert view.subtree_size(ids["local"]) == before[ids["local"]] + added
        assert view.subtree_size(ids["alpine"]) == before[ids["alpine"]] + added
        assert view.subtree_size(ids["old"]) == before[ids["old"]]
        # the totals kept by deltas are the totals summed afresh
        fresh = Subtrees.build(view.children, lambda i: view.rows[i].size)
        for record_id in view.rows:
            assert view.subtree_size(record_id) == fresh.size(record_id)
        # alpine's chain is now the heaviest: it moved to the top, the cursor stayed
        await wait_for(pilot, lambda: top_level(app)[0] == ids["alpine"], what="the re-sort")
        assert app.ref_tree.cursor_id == ids["local"]
        line = row_line(app, ids["alpine"])
        from cachetui.widgets.format import size as fmt

        assert fmt(view.subtree_size(ids["alpine"])) in line
