"""The fleet view's packed records: one value per record, built from its packed facts.

A loaded store keeps one small tuple per record (``StoreRecords``); the row, the details
pane and a refusal read the ``RecordState`` built from it, so they agree. These tests
check that value against the facts, the tree's shape and subtree totals it implies, and
what a change to one store tells the tree (``_diff``), without a database.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from cachetui.core import HolderInfo, Totals
from cachetui.fleet_service import _diff
from cachetui.fleet_views import (
    FleetChildren,
    FleetRows,
    FleetView,
    StoreRecords,
    pack,
)


def packed(
    parent: str | None,
    size: int,
    *,
    held: bool = False,
    children: bool = False,
    description: str = "",
):
    return pack(
        parent, False, held, held, False, False, "regular", description, size, 1.0, 2.0, 3,
        False, children,
    )  # fmt: skip


def chain() -> StoreRecords:
    """a <- b <- c (c on top of b on top of a), and a lone d; b is held."""
    return StoreRecords(
        "host",
        {
            "c": packed("b", 300),
            "a": packed(None, 100, children=True),
            "b": packed("a", 200, held=True, children=True),
            "d": packed(None, 5),
        },
        {"b": (HolderInfo(7, "b", 4242, "build-1", 1.0, True, True),)},
    )


def view_of(*stores: StoreRecords) -> FleetView:
    placeholders = {s.prefix: "a store row" for s in stores}  # not read here
    return FleetView(
        rows=FleetRows(placeholders, {s.name: s for s in stores}),  # type: ignore[arg-type]
        children=FleetChildren(tuple(placeholders), {s.name: s for s in stores}),
        totals=Totals(0, 0, 0, 0, 0, 0, 0, 0),
        stores=MappingProxyType({}),
    )


def test_a_record_value_is_built_from_its_packed_facts() -> None:
    records = chain()
    view = view_of(records)
    b = view.rows["host/b"]
    assert (b.id, b.parent, b.size, b.layer_id) == ("host/b", "host/a", 200, "b")
    assert b.held and b.in_use and b.has_children
    assert b.refusal == "it is held by pid 4242 on build-1"
    assert [h.pid for h in b.holders] == [4242]
    assert view.rows["host/a"].refusal == "it has child records (prune them first)"
    assert view.rows["host/d"].refusal is None
    assert view.rows["host/a"].parent == "host/"  # a top record's parent: the store's row
    assert "host/c" in view.rows and "host/x" not in view.rows and "other/c" not in view.rows
    assert sorted(view.rows.records["host"]) == ["host/a", "host/b", "host/c", "host/d"]
    assert view.brief("host/c").size == 300
    assert view.ancestors("host/c") == ["host/b", "host/a", "host/"]


def test_the_shape_and_subtree_totals_follow_the_parents() -> None:
    view = view_of(chain())
    assert sorted(view.child_ids("host/")) == ["host/a", "host/d"]
    assert view.child_ids("host/a") == ("host/b",)
    assert view.child_ids("host/c") == ()
    assert view.subtree_size("host/a") == 600 and view.subtree_count("host/a") == 3
    assert view.subtree_size("host/c") == 300 and view.subtree_count("host/c") == 1


def test_an_offline_store_refuses_every_record_and_the_delta_says_so() -> None:
    online = chain()
    offline = online.replaced(refused="host host is offline: no action can reach it")
    assert offline.packed is online.packed  # nothing copied
    view = view_of(offline)
    assert {view.rows[k].refusal for k in view.rows.records["host"]} == {
        "host host is offline: no action can reach it"
    }
    delta = _diff(view_of(online), view)
    assert sorted(delta.changed) == ["host/a", "host/b", "host/c", "host/d"]


@pytest.mark.parametrize("told", [False, True], ids=["compared", "edited ids"])
def test_a_size_change_moves_its_subtree_totals_and_the_view_before_keeps_its_own(
    told: bool,
) -> None:
    old = chain()
    before = view_of(old)
    assert before.subtree_size("host/a") == 600
    values = dict(old.packed)
    values["c"] = packed("b", 1300)
    ancestors = StoreRecords("host", values).ancestor_ids
    assert old.summed is not None
    new = old.replaced(
        packed=values,
        reshaped=False,
        trees=old.summed.resized({"c": 1000}, ancestors),
        edited=["c"] if told else None,
    )
    assert (new.edit is not None) == told
    after = view_of(new)
    assert after.subtree_size("host/a") == 1600 and after.subtree_size("host/b") == 1500
    assert before.subtree_size("host/a") == 600  # the view before did not move
    delta = _diff(before, after)
    assert delta.changed == ("host/c",) and not (delta.added or delta.removed)


@pytest.mark.parametrize("told", [False, True], ids=["compared", "edited ids"])
def test_a_parent_gone_moves_its_child_to_the_top_and_the_delta_says_so(told: bool) -> None:
    old = chain()
    kept = {k: v for k, v in old.packed.items() if k != "b"}
    new = old.replaced(packed=kept, edited=["b"] if told else None)
    view = view_of(new)
    assert view.rows["host/c"].parent == "host/"
    assert sorted(view.child_ids("host/")) == ["host/a", "host/c", "host/d"]
    delta = _diff(view_of(old), view)
    assert delta.removed == ("host/b",)
    assert delta.reparented == ("host/c",)


def test_holders_changed_mark_only_their_records_changed() -> None:
    old = chain()
    new = old.replaced(holders={})
    delta = _diff(view_of(old), view_of(new))
    assert delta.changed == ("host/b",)
    assert view_of(new).rows["host/b"].holders == ()


def test_edited_ids_count_only_against_the_records_they_were_made_from() -> None:
    """A value made from other records than the view before compares every record."""
    old = chain()
    values = dict(old.packed)
    values["d"] = packed(None, 50)
    middle = old.replaced(packed=values, reshaped=False, edited=["d"])
    values = dict(middle.packed)
    values["a"] = packed(None, 150, children=True)
    new = middle.replaced(packed=values, reshaped=False, edited=["a"])
    # from ``old`` to ``new`` both changed: ``new``'s edit names ``middle``'s records
    assert sorted(_diff(view_of(old), view_of(new)).changed) == ["host/a", "host/d"]
    assert _diff(view_of(middle), view_of(new)).changed == ("host/a",)
