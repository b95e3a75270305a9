"""BuildKit's semantics: handles, locking, errors, and parents."""

from __future__ import annotations

import os

import pytest

from cachetui.core import (
    CacheManager,
    InvalidError,
    LockedError,
    NotFoundError,
    PruneOptions,
)
from tests.conftest import layer_dirs, write_file
from tests.core.helpers import du_counts

UNKNOWN = "foobar00000000000000000aa"


# -- A. Handles, locking and errors ------------------------------------------------------


def test_unknown_id_is_not_found(cm: CacheManager) -> None:
    with pytest.raises(NotFoundError, match=UNKNOWN):
        cm.get(UNKNOWN)
    assert du_counts(cm) == (0, 0)


def test_mutable_is_exclusive(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    with pytest.raises(LockedError) as caught:
        cm.get_mutable(a.id)
    assert caught.value.id == a.id
    assert du_counts(cm) == (1, 0)


def test_mount_is_a_writable_directory(cm: CacheManager) -> None:
    a = cm.new()
    mount = a.mount()
    assert mount.upper is not None and mount.upper.is_dir()
    assert os.access(mount.upper, os.W_OK)
    assert mount.lowers == ()


def test_commit_keeps_the_pair_in_use(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    rows = cm.disk_usage()
    assert [(r.id, r.mutable, r.in_use) for r in rows] == [(s.id, False, True)]
    with pytest.raises(LockedError):
        cm.get_mutable(a.id)


def test_release_of_the_commit_exposes_the_retained_mutable(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    s.release()
    rows = cm.disk_usage()
    assert [(r.id, r.mutable, r.reclaimable) for r in rows] == [(a.id, True, True)]


def test_reacquire_the_mutable_discards_the_immutable(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    s.release()
    again = cm.get_mutable(a.id)
    assert again.id == a.id
    assert du_counts(cm) == (1, 0)
    with pytest.raises(NotFoundError):
        cm.get(s.id)


def test_finalize_consumes_the_mutable(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    s.finalize()
    s.release()
    with pytest.raises(NotFoundError):
        cm.get_mutable(a.id)
    with pytest.raises(InvalidError, match="not mutable"):
        cm.get_mutable(s.id)
    assert cm.get(s.id).id == s.id


def test_several_handles_on_one_immutable(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    s.finalize()
    s.release()
    s1, s2 = cm.get(s.id), cm.get(s.id)
    assert du_counts(cm) == (1, 0)
    assert len(cm.disk_usage()) == 1
    s1.release()
    s2.release()


def test_lazy_commit_while_held(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    again = cm.get(s.id)
    assert again.id == s.id
    s.release()
    again.release()
    held = cm.get(s.id)
    with pytest.raises(LockedError):
        cm.get_mutable(a.id)
    held.release()
    assert cm.get_mutable(a.id).id == a.id


def test_non_retained_mutable_released_uncommitted(cm: CacheManager, root) -> None:
    a = cm.new()
    a.release()
    with pytest.raises(NotFoundError):
        cm.get(a.id)
    with pytest.raises(NotFoundError):
        cm.get_mutable(a.id)
    assert du_counts(cm) == (0, 0)
    assert layer_dirs(root) == []


def test_non_retained_pair_released(cm: CacheManager, root) -> None:
    a = cm.new()
    s = a.commit()
    s.release()
    for record_id in (a.id, s.id):
        with pytest.raises(NotFoundError):
            cm.get(record_id)
    assert du_counts(cm) == (0, 0)
    assert layer_dirs(root) == []


def test_retain_on_the_immutable_keeps_a_non_retained_pair(cm: CacheManager) -> None:
    a = cm.new()
    s = a.commit()
    s.set_retain()
    s.release()
    rows = cm.disk_usage()
    assert [(r.id, r.mutable, r.in_use) for r in rows] == [(a.id, True, False)]


def test_commit_validation(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    a.commit()
    with pytest.raises(InvalidError, match="already committed"):
        a.commit()
    b = cm.new(retain=True)
    b.release()
    with pytest.raises(InvalidError, match="released"):
        b.commit()


def test_get_on_an_unreferenced_mutable_makes_a_lazy_commit(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    a.release()
    r = cm.get(a.id)
    assert r.id != a.id and not r.mutable
    with pytest.raises(LockedError):
        cm.get_mutable(a.id)
    r.release()
    assert cm.get_mutable(a.id).id == a.id


def test_get_on_a_mutable_with_a_free_equal_immutable(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    s.release()
    assert cm.get(a.id).id == s.id


def test_double_release_is_a_no_op(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    s.finalize()
    h1, h2 = cm.get(s.id), cm.get(s.id)
    h1.release()
    h1.release()
    assert du_counts(cm) == (1, 0)  # h2 and s still hold it
    h2.release()
    s.release()
    s.release()
    assert du_counts(cm) == (0, 1)


# -- B. Parents ----------------------------------------------------------------------------


def _finalized(cm: CacheManager, **kwargs):
    m = cm.new(retain=True, **kwargs)
    s = m.commit()
    s.finalize()
    return s


def test_new_finalizes_its_parent(cm: CacheManager) -> None:
    a = cm.new()
    s = a.commit()
    cm.new(s)
    with pytest.raises(NotFoundError):
        cm.get_mutable(a.id)
    row = cm.state().rows[s.id]
    assert row.equal_mutable is None


def test_a_child_keeps_its_parent_in_use(cm: CacheManager) -> None:
    p = _finalized(cm)
    p.release()
    h1, h2 = cm.get(p.id), cm.get(p.id)
    assert du_counts(cm) == (1, 0)
    h1.release()
    b = cm.new(h2, retain=True)
    assert du_counts(cm) == (2, 0)
    b.commit()
    h2.release()
    assert du_counts(cm) == (2, 0)


def test_releasing_the_child_frees_both(cm: CacheManager, root) -> None:
    p = _finalized(cm)
    p.release()
    h = cm.get(p.id)
    b = cm.new(h, retain=True)
    c = b.commit()
    h.release()
    c.release()
    rows = cm.disk_usage()
    assert du_counts(cm) == (0, 2)
    assert {r.id for r in rows} == {b.id, p.id}
    assert len(cm.prune()) == 2
    assert du_counts(cm) == (0, 0)
    assert layer_dirs(root) == []


def test_prune_with_everything_held_does_nothing(cm: CacheManager, root) -> None:
    a = cm.new()
    s = a.commit()
    b = cm.new(s, retain=True)
    b.commit()
    assert du_counts(cm) == (2, 0)
    assert len(layer_dirs(root)) == 2
    assert cm.prune() == []


def test_only_the_unreferenced_leaf_is_pruned(cm: CacheManager, root) -> None:
    a = cm.new()
    s = a.commit()
    b = cm.new(s, retain=True)
    c = b.commit()
    c.release()
    assert du_counts(cm) == (1, 1)
    removed = cm.prune()
    assert [r.id for r in removed] == [b.id]
    assert du_counts(cm) == (1, 0)
    assert len(layer_dirs(root)) == 1
    with pytest.raises(NotFoundError):
        cm.get(c.id)


def test_parent_and_child_pruned_in_successive_rounds(cm: CacheManager, root) -> None:
    a = cm.new()
    s = a.commit()
    b = cm.new(s, retain=True)
    b.commit().release()
    cm.prune()
    s.release()
    h = cm.get(s.id)
    b2 = cm.new(h, retain=True)
    c2 = b2.commit()
    h.release()
    assert du_counts(cm) == (2, 0)
    assert cm.prune() == []
    c2.release()
    assert du_counts(cm) == (0, 2)
    removed = cm.prune()
    assert [r.id for r in removed] == [b2.id, s.id]
    assert layer_dirs(root) == []


def test_released_parent_of_a_held_child(cm: CacheManager) -> None:
    p = _finalized(cm)
    q = cm.new(p, retain=True)
    p.release()
    assert cm.prune() == []
    assert du_counts(cm) == (2, 0)
    cm.get(p.id).release()
    q.release()
    assert du_counts(cm) == (0, 2)
    p_again = cm.get(p.id)
    assert du_counts(cm) == (1, 1)
    removed = cm.prune()
    assert [r.id for r in removed] == [q.id]
    assert du_counts(cm) == (1, 0)
    p_again.release()


def test_chain_of_three_pruned_leaf_first(cm: CacheManager) -> None:
    a = _finalized(cm, description="A")
    b_mut = cm.new(a, retain=True, description="B")
    b = b_mut.commit()
    c_mut = cm.new(b, retain=True, description="C")
    c = c_mut.commit()
    c.finalize()
    for ref in (a, b, c):
        ref.release()
    removed = cm.prune()
    assert [r.description for r in removed] == ["C", "B", "A"]


def test_several_parents_do_not_apply() -> None:
    """Merge/Diff refs (several parents) are out of scope: a record has at most one parent."""
    from cachetui.core.state import RecordRow

    assert "parent" in RecordRow.__dataclass_fields__
    assert "parents" not in RecordRow.__dataclass_fields__


def test_prune_all_on_a_released_chain_leaves_no_directories(cm: CacheManager, root) -> None:
    a = _finalized(cm)
    write_file(cm.snapshots.path(a.id), "f", 1000)
    child = cm.new(a)
    child.commit().release()
    a.release()
    cm.prune(PruneOptions(all=True))
    assert layer_dirs(root) == []


def test_a_stale_handle_never_deletes_a_record_someone_else_holds(cm: CacheManager) -> None:
    first = cm.new()  # not retained: a plain release would delete it
    write_file(first.mount().upper, "f", 100)
    assert cm.force_release(first.holder_id)
    second = cm.get_mutable(first.id)
    first.release()  # the stale handle: its holder row is gone
    assert second.mount().upper.is_dir()
    assert second.size() > 0
    second.release()
