"""The service's view model as plain data: rows, deltas, details and prune plans."""

from __future__ import annotations

import sqlite3

import pytest

from cachetui.core.errors import FilterSyntaxError, InvalidError
from cachetui.core.watch import ChangeSet
from cachetui.service import CacheService
from cachetui.views import state_words
from tests.ui.store_fixture import MB, FixedClock, fixed_disk_stat


@pytest.fixture
def service(store):
    root, _ids = store
    svc = CacheService(root, clock=FixedClock(), disk_stat_fn=fixed_disk_stat)
    svc.load()
    yield svc
    svc.close()


def test_rows_and_shape(service, store):
    _root, ids = store
    view = service.view
    assert set(view.roots()) == {ids["old"], ids["gomod"], ids["alpine"], ids["frontend"]}
    assert set(view.child_ids(ids["apt"])) == {ids["pip"], ids["npm"]}
    pip = view.rows[ids["pip"]]
    assert pip.held and pip.in_use
    assert pip.refusal == "it is held by pid 4242 on ci-runner-7"
    alpine = view.rows[ids["alpine"]]
    assert alpine.in_use and not alpine.held and alpine.has_children
    npm = view.rows[ids["npm"]]
    assert npm.pending_commit and "pending" in state_words(npm)
    gomod = view.rows[ids["gomod"]]
    assert state_words(gomod) == ("mutable", "retained") and gomod.refusal is None
    t = view.totals
    assert t.total == t.reclaimable + t.in_use
    assert t.disk_free == fixed_disk_stat(_root).free
    assert view.ancestors(ids["pip"]) == [ids["apt"], ids["alpine"]]


def test_prune_plan_counts_only_what_goes(service, store):
    _root, ids = store
    plan = service.plan_prune([ids["old"], ids["local"], ids["pip"]])
    assert set(plan.ids) == {ids["old"], ids["local"]}
    assert plan.freed == 730 * MB + 2_400_000  # alpine (the parent that stays) not counted
    assert dict(plan.refused) == {ids["pip"]: "it is held by pid 4242 on ci-runner-7"}


def test_details_explain_in_use(service, store):
    _root, ids = store
    d = service.details(ids["apt"])
    assert d.in_use_because in (ids["pip"], ids["npm"])
    assert d.prune_refused and d.prune_frees == 0
    assert d.subtree_count == 7
    assert d.subtree_size == (312 + 41 + 5 + 3 + 2 + 1) * MB + 96_500_000
    assert d.upper is None and d.lowers[0].endswith(ids["apt"])
    d = service.details(ids["npm"])
    assert d.holders[0].pid == 4343 and d.holders[0].host == "ci-runner-7"
    assert d.lowers[0].endswith("npmci00000000000000000008")  # the mutable's layer
    d = service.details(ids["gomod"])
    assert d.upper and d.upper.endswith(ids["gomod"]) and d.prune_frees == 187 * MB


def test_remeasure_changes_one_row(service, store):
    root, ids = store
    before = service.view
    (root / "snapshots" / ids["gomod"] / "blob").write_bytes(b"x" * 100_000)
    delta = service.apply(ChangeSet(frozenset({ids["gomod"], "z" * 25})))
    assert delta.changed == (ids["gomod"],)
    assert not delta.added and not delta.removed
    grow = delta.view.rows[ids["gomod"]].size - before.rows[ids["gomod"]].size
    assert delta.view.totals.total == before.totals.total + grow
    assert delta.view.totals.reclaimable == before.totals.reclaimable + grow


def test_metadata_change_is_a_diff(service, store):
    root, ids = store
    with sqlite3.connect(root / "metadata.db") as db:
        db.execute("DELETE FROM holder WHERE record = ?", (ids["pip"],))
    delta = service.apply(ChangeSet(metadata=True))
    assert ids["pip"] in delta.changed and not delta.view.rows[ids["pip"]].in_use
    assert not delta.removed and not delta.added


def test_filters(service, store):
    _root, ids = store
    assert service.matching("type==frontend") == {ids["frontend"]}
    assert service.matching("inuse,immutable") == {
        ids["alpine"],
        ids["apt"],
        ids["pip"],
        ids["npm"],
    }
    with pytest.raises(FilterSyntaxError) as err:
        service.check_filter("type==x,nope")
    assert err.value.position == 8


def test_hold_commit_release(service, store):
    _root, ids = store
    held = service.hold(ids["frontend"])
    assert held == ids["frontend"]
    assert held in service.load().pinned
    assert service.release(held) == 1
    assert not service.load().rows[held].in_use
    new = service.commit(ids["gomod"])
    view = service.load()
    assert ids["gomod"] not in view.rows and not view.rows[new].mutable


def test_read_only_service_refuses(store):
    root, ids = store
    svc = CacheService(root, read_only=True, clock=FixedClock(), disk_stat_fn=fixed_disk_stat)
    try:
        svc.load()
        for call in (
            lambda: svc.commit(ids["gomod"]),
            lambda: svc.hold(ids["old"]),
            lambda: svc.prune_ids([ids["old"]]),
            lambda: svc.force_release(ids["pip"], ()),
        ):
            with pytest.raises(InvalidError):
                call()
        assert svc.plan_prune([ids["old"]]).ids == (ids["old"],)  # a dry run is fine
    finally:
        svc.close()
