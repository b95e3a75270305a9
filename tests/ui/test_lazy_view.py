"""The local view at scale: opening reads every record but builds only the values of the
rows shown, and the cheap reads (place, size, sort fields, totals) agree with the values."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from cachetui.core import CacheManager, matching_ids, search_ids, totals
from cachetui.core.records import RecordStates
from cachetui.service import CacheService
from cachetui.subtree import Layered, Subtrees
from tests.ui.conftest import loaded, make_app, settle
from tests.ui.store_fixture import T0, fixed_disk_stat

pytestmark = pytest.mark.anyio


def bulk_store(root: Path, count: int, chain: int = 10) -> list[str]:
    """``count`` finalized records in chains of ``chain``, written with SQL in one go
    (the API costs a transaction per record); one empty layer directory each."""
    CacheManager.open(root).close()
    ids = [f"bulk{n:021d}" for n in range(count)]
    for rid in ids:
        (root / "snapshots" / rid).mkdir()
    con = sqlite3.connect(root / "metadata.db")
    con.executemany(
        "INSERT INTO record (id, parent, mutable, equal_mutable, retain, description, "
        "record_type, created_at, last_used_at, usage_count, size, deleted, pending_use, "
        "apparent_size) VALUES (?,?,0,NULL,1,?,'regular',?,?,?,?,0,0,0)",
        [
            (
                rid,
                ids[n - 1] if n % chain else None,
                f"RUN step {n}",
                T0 - n,
                T0 - n / 2,
                n % 13,
                4096 * (1 + n % 50),
            )
            for n, rid in enumerate(ids)
        ],
    )
    con.commit()
    con.close()
    return ids


async def test_opening_builds_only_the_rows_on_screen(tmp_path):
    root = tmp_path / "store"
    ids = bulk_store(root, 3000)
    app = make_app(root)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        view = app.service.view
        assert view is not None
        rows = view.rows
        assert isinstance(rows, RecordStates) and len(rows) == 3000
        assert len(app.ref_tree.root.children) == 300  # the chains' bases
        built = sum(1 for rid in ids if rows.is_built(rid))
        assert built <= 60, built  # the lines on screen and the cursor's details
        # the totals and the subtree totals are the ones the values give
        everything = dict(app.service.manager.records().items())  # every value, read afresh
        assert view.totals == totals(list(everything.values()), fixed_disk_stat(root))
        fresh = Subtrees.build(view.children, lambda i: everything[i].size)
        first = app.ref_tree.root.children[0].data
        assert view.subtree_size(first) == fresh.size(first)
        assert view.subtree_count(first) == 10
        # opening a chain builds what it shows, not the rest
        await pilot.press("shift+space")
        await settle(pilot)
        assert sum(1 for rid in ids if rows.is_built(rid)) <= built + 20


def test_cheap_reads_agree_with_every_value(store):
    root, _ids = store
    # a missing layer (its record "missing", those below it "broken") makes health count
    victim = next(p for p in (root / "snapshots").iterdir() if p.name.startswith("apt"))
    shutil.rmtree(victim)
    service = CacheService(root, read_only=True, disk_stat_fn=fixed_disk_stat)
    try:
        view = service.load()
        rows = view.rows
        assert isinstance(rows, RecordStates)
        healths = set()
        for rid in rows:
            value = rows[rid]
            brief = rows.brief(rid)
            assert view.parent_of(rid) == value.parent
            assert rows.size_of(rid) == brief.size == value.size
            assert brief.last_used_at == value.last_used_at
            assert (brief.usage_count, brief.description) == (value.usage_count, value.description)
            assert (brief.in_use, brief.shared) == (value.in_use, value.shared)
            healths.add(value.health)
        assert healths == {"ok", "missing", "broken"}
        # built one at a time or all at once: the same values
        assert dict(rows.items()) == dict(service.manager.records().items())
    finally:
        service.close()


FILTERS = [
    "mutable",
    "inuse",
    "shared",
    "type==source.local",
    "type==exec.cachemount,sharing==locked",
    "description~=apt",
    "label.team==infra",
    "label.team",
    "immutable,private",
    "id!=nothing",
]
SEARCHES = ["apt", "RUN go", "layer", "zz-nothing", "  "]


def test_filters_and_searches_read_no_value_and_agree_with_every_value(store):
    """A filter over 100,000 records must not build every value (it holds the
    interpreter, and the screen, for seconds): the rows answer it from their cheap
    reads, and the answer is the one every value gives, also after sizes changed."""
    root, ids = store
    with CacheManager.open(root) as cm:  # a label and a held record to filter on
        cm.set_labels(next(iter(ids.values())), {"team": "infra"})
    service = CacheService(root, read_only=True, disk_stat_fn=fixed_disk_stat)
    try:
        view = service.load()
        rows = view.rows
        assert isinstance(rows, RecordStates)
        answers = {text: service.matching(text) for text in FILTERS + SEARCHES}
        assert not any(rows.is_built(rid) for rid in rows)  # no value was built
        values = list(rows.values())
        for text in FILTERS:
            assert answers[text] == matching_ids(values, text), text
        for text in SEARCHES:
            assert answers[text] == search_ids(values, text), text
        assert answers["label.team==infra"] and answers["mutable"] and answers["apt"]
        # a size change puts a replaced value over the rows: the same answers
        changed = next(rid for rid in rows if rows[rid].mutable)
        layered = Layered(rows).replaced({changed: replace(rows[changed], size=12345)})
        for text in FILTERS:
            assert layered.matching(text) == matching_ids(list(layered.values()), text)
        for text in SEARCHES:
            assert layered.search(text) == search_ids(list(layered.values()), text)
    finally:
        service.close()


async def test_the_first_picture_is_kept_from_the_collector_and_still_freed(tmp_path):
    """The preloaded picture is moved out of the cyclic collector's reach (it would
    traverse it while the first frame is drawn), yet a reload frees it (reference
    counting: it holds no cycles), and closing the dashboard hands the rest back."""
    import gc
    import weakref

    root = tmp_path / "store"
    bulk_store(root, 200)
    gc.collect()
    frozen_before = gc.get_freeze_count()
    app = make_app(root, preload=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await loaded(pilot)
        first = app.service.view
        assert first is not None
        assert gc.get_freeze_count() > frozen_before
        gone = weakref.ref(first.rows)
        del first
        with CacheManager.open(root) as cm:  # a change: the screen takes a new picture
            cm.new(description="a new layer", retain=True).release()
        app.reload()
        await settle(pilot)
        view = app.service.view
        assert view is not None and len(view.rows) == 201
        assert app.ref_tree.view is view
        assert gone() is None, "the first picture outlived its reload"
    app.shutdown()
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()
