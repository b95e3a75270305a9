"""The effective age computed per subtree when asked equals the whole-store pass: ties,
equal pairs and damaged parent loops included."""

from __future__ import annotations

import random

import pytest

from cachetui.core.effective_age import NewestInSubtrees, newest_in_subtrees
from cachetui.core.recordstore import RecordRow
from cachetui.core.state import StoreState


def _row(rid: str, parent: str | None, rng: random.Random, **kw: object) -> RecordRow:
    used = rng.random() < 0.7
    values: dict[str, object] = dict(
        id=rid,
        parent=parent,
        mutable=False,
        equal_mutable=None,
        retain=False,
        description=rid,
        record_type="regular",
        created_at=float(rng.choice([100, 200, 300])),  # few values: many ties
        last_used_at=float(rng.choice([150, 250, 350])) if used else None,
        usage_count=1 if used else 0,
        size=1,
        deleted=False,  # a picture of the store holds no deleted rows
        pending_use=False,
    )
    values.update(kw)
    return RecordRow(**values)  # type: ignore[arg-type]


def _state(seed: int) -> StoreState:
    rng = random.Random(seed)
    rows: dict[str, RecordRow] = {}
    ids: list[str] = []
    for n in range(120):
        rid = f"r{n:03d}"
        parent = rng.choice([None, None, *ids[-20:]]) if ids else None
        rows[rid] = _row(rid, parent, rng)
        ids.append(rid)
    # equal pairs: an immutable pointing at a mutable
    for n in range(6):
        mutable = rng.choice(ids)
        rows[mutable].mutable = True
        imm = f"p{n:03d}"
        rows[imm] = _row(imm, rows[mutable].parent, rng, equal_mutable=mutable, deleted=False)
    # a damaged loop, and a record hanging below it
    rows["loopa"] = _row("loopa", "loopb", rng, deleted=False)
    rows["loopb"] = _row("loopb", "loopa", rng, deleted=False)
    rows["under"] = _row("under", "loopa", rng, deleted=False)
    return StoreState(rows, [])


@pytest.mark.parametrize("seed", range(12))
def test_per_subtree_equals_the_whole_store_pass(seed):
    state = _state(seed)
    whole = newest_in_subtrees(state)
    lazy = NewestInSubtrees(state)
    order = list(state.rows)
    random.Random(seed).shuffle(order)  # asked in any order, deep records first or not
    for rid in order:
        assert lazy.get(rid) == whole.get(rid), rid
    assert lazy.get("no-such-record") is None
