"""Hypothesis properties of prune over random record forests on real stores.

* prune never removes a record held by a live handle, nor one that still has children;
* a dry run returns exactly what the real prune then removes, in the same order.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cachetui.core import CacheManager, PruneOptions
from tests.conftest import FakeClock

# Each record: (parent index or None, held?, retain?, record type, uses, size in bytes)
RECORD = st.tuples(
    st.integers(min_value=-1, max_value=30),
    st.booleans(),
    st.sampled_from(["regular", "regular", "source.local", "internal", "exec.cachemount"]),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=3).map(lambda k: k * 1500),
)
FOREST = st.lists(RECORD, min_size=1, max_size=14)
POLICY = st.builds(
    PruneOptions,
    all=st.booleans(),
    filters=st.sampled_from([(), ("type==regular",), ("type==source.local", "mutable")]),
    keep_duration=st.sampled_from([0, 1800, 7200]),
    max_used_space=st.sampled_from([0, 0, 4096, 20_000]),
)


def build(cm: CacheManager, clock: FakeClock, forest) -> tuple[list[str], set[str]]:
    """Create the forest; returns record ids and the ids still held by a handle."""
    ids: list[str] = []
    held: dict[str, object] = {}
    for index, (parent_index, keep_held, kind, uses, size) in enumerate(forest):
        parent_ref = None
        if 0 <= parent_index < index:
            parent_ref = cm.get(ids[parent_index])
        m = cm.new(parent_ref, retain=True, record_type=kind)
        if size:
            (m.mount().upper / "data").write_bytes(b"d" * size)
        s = m.commit()
        s.finalize()
        clock.advance(600)
        for _ in range(uses):
            cm.get(s.id).release()
        if parent_ref is not None:
            parent_ref.release()
        ids.append(s.id)
        if keep_held:
            held[s.id] = s
        else:
            s.release()
    return ids, set(held)


@settings(max_examples=25)
@given(forest=FOREST, policy=POLICY)
def test_prune_never_removes_held_records_or_parents(forest, policy) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as tmp:
        cm = CacheManager.open(Path(tmp) / "s", clock=clock)
        _, held = build(cm, clock, forest)
        before = cm.state()
        removed_order: list[str] = []

        def check(info) -> None:
            # At the moment a record goes, none of its children may remain.
            state = cm.state()
            assert not state.child_ids(info.id), f"{info.id} removed before its children"
            removed_order.append(info.id)

        removed = cm.prune(policy, on_prune=check)
        gone = {r.id for r in removed}
        assert not gone & held
        # Every ancestor of a held record survives too.
        for record_id in held:
            assert not set(before.chain(record_id)) & gone
        after = cm.state()
        assert set(after.rows) == set(before.rows) - gone
        assert [r.id for r in removed] == removed_order
        cm.close()


@settings(max_examples=25)
@given(forest=FOREST, policy=POLICY)
def test_dry_run_returns_exactly_what_prune_removes(forest, policy) -> None:
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as tmp:
        cm = CacheManager.open(Path(tmp) / "s", clock=clock)
        build(cm, clock, forest)
        rows_before = set(cm.state().rows)
        planned = cm.prune(policy, dry_run=True)
        assert set(cm.state().rows) == rows_before  # nothing touched
        removed = cm.prune(policy)
        assert [(r.id, r.size) for r in planned] == [(r.id, r.size) for r in removed]
        cm.close()
