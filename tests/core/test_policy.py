"""Tests for cachetui.core.policy: keep-bytes table, deletion ranking, stop rule, defaults."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachetui.core.errors import InvalidError
from cachetui.core.policy import (
    DEFAULT_CAP,
    Candidate,
    DiskStat,
    calculate_keep_bytes,
    default_gc_policies,
    disk_stat,
    keep_limit,
    percent_of_disk,
    rank_for_deletion,
    score_for_deletion,
    should_stop,
)
from cachetui.core.types import PruneOptions

GB = 10**9
GIB = 2**30

# --- calculate_keep_bytes: BuildKit's TestCalculateKeepBytes table ----------------------


@pytest.mark.parametrize(
    ("total", "free", "opts", "expected"),
    [
        pytest.param(1000, 9000, PruneOptions(), 0, id="empty"),
        pytest.param(1000, 9000, PruneOptions(max_used_space=2000), 2000, id="only max"),
        pytest.param(7000, 3000, PruneOptions(min_free_space=5000), 5000, id="only free"),
        pytest.param(
            7000,
            3000,
            PruneOptions(min_free_space=5000, reserved_space=6000),
            6000,
            id="free + reserved",
        ),
        pytest.param(
            7000,
            3000,
            PruneOptions(min_free_space=5000, reserved_space=2000, max_used_space=4000),
            4000,
            id="free + reserved + max",
        ),
        pytest.param(4000, 2000, PruneOptions(max_used_space=2000), 2000, id="mixed max"),
        pytest.param(4000, 2000, PruneOptions(min_free_space=5000), 1000, id="mixed free"),
        pytest.param(
            4000,
            2000,
            PruneOptions(min_free_space=5000, reserved_space=2000),
            2000,
            id="mixed free + reserved",
        ),
        pytest.param(
            4000,
            2000,
            PruneOptions(min_free_space=5000, reserved_space=2000, max_used_space=4000),
            2000,
            id="mixed all",
        ),
    ],
)
def test_calculate_keep_bytes(total: int, free: int, opts: PruneOptions, expected: int) -> None:
    assert calculate_keep_bytes(total, DiskStat(total=10000, free=free), opts) == expected


def test_only_reserved_acts_as_cap() -> None:
    assert calculate_keep_bytes(5000, None, PruneOptions(reserved_space=300)) == 300


def test_min_free_only_with_enough_free_space_keeps_total() -> None:
    opts = PruneOptions(min_free_space=1000)
    dstat = DiskStat(total=10000, free=5000)
    assert calculate_keep_bytes(4000, dstat, opts) == 4000
    assert should_stop(4000, keep_limit(4000, dstat, opts))
    # even an empty (or all zero-byte) cache: nothing to remove
    assert keep_limit(0, dstat, opts) == 0
    assert should_stop(0, keep_limit(0, dstat, opts))


def test_keep_zero_with_space_options_means_prune_to_zero() -> None:
    dstat = DiskStat(total=10000, free=0)
    # total - excess = -400, but max(keep, reserved=0) clamps it: never negative
    assert calculate_keep_bytes(100, dstat, PruneOptions(min_free_space=500)) == 0
    assert calculate_keep_bytes(500, dstat, PruneOptions(min_free_space=500)) == 0
    # 0 in GC mode is a real limit: prune down to 0 bytes
    assert keep_limit(500, dstat, PruneOptions(min_free_space=500)) == 0
    assert not should_stop(500, 0)
    assert should_stop(0, 0)
    assert not should_stop(10, 0)


def test_min_free_needs_dstat() -> None:
    with pytest.raises(InvalidError, match="min_free_space"):
        calculate_keep_bytes(100, None, PruneOptions(min_free_space=5))


def test_keep_limit_none_without_space_options() -> None:
    assert keep_limit(1000, None, PruneOptions(all=True, keep_duration=60)) is None
    assert not should_stop(0, None)
    assert not should_stop(10**12, None)


def test_should_stop_at_or_below() -> None:
    assert should_stop(30, 30)
    assert should_stop(29, 30)
    assert not should_stop(31, 30)


_sizes = st.integers(min_value=0, max_value=10**15)


@given(
    total=_sizes,
    free=_sizes,
    reserved=_sizes,
    max_used=_sizes,
    min_free=_sizes,
)
def test_keep_at_least_reserved(
    total: int, free: int, reserved: int, max_used: int, min_free: int
) -> None:
    opts = PruneOptions(reserved_space=reserved, max_used_space=max_used, min_free_space=min_free)
    keep = calculate_keep_bytes(total, DiskStat(total=total + free, free=free), opts)
    if opts.has_space_limit:
        assert keep >= reserved
        assert keep_limit(total, DiskStat(total=total + free, free=free), opts) == keep
    else:
        assert keep == 0


# --- ranking: BuildKit's sortDeleteRecords -----------------------------------------------

T1, T2, T3 = 1_000.0, 2_000.0, 3_000.0


def _worked_example() -> list[Candidate]:
    return [
        Candidate("b", T1, 3, 10),
        Candidate("d", T3, 1, 10),
        Candidate("a", None, 0, 10),
        Candidate("c", T2, 1, 10),
    ]


def test_worked_example_ranking_and_scores() -> None:
    scored = score_for_deletion(_worked_example())
    assert [c.id for c, _ in scored] == ["a", "c", "b", "d"]
    assert [round(s, 3) for _, s in scored] == [0.583, 1.417, 1.5, 1.667]
    assert [c.id for c in rank_for_deletion(_worked_example())] == ["a", "c", "b", "d"]


def test_ranking_is_independent_of_input_order() -> None:
    cands = _worked_example()
    assert rank_for_deletion(cands) == rank_for_deletion(list(reversed(cands)))


def test_equal_timestamps_and_counts_share_an_index() -> None:
    cands = [Candidate("x", T1, 2), Candidate("y", T1, 2), Candidate("z", T2, 5)]
    scores = dict((c.id, s) for c, s in score_for_deletion(cands))
    assert scores["x"] == scores["y"] == pytest.approx(2 / 3 + 2 / 3)
    assert scores["z"] == 2.0


def test_ties_broken_by_id() -> None:
    # B and D tie exactly (2/3 + 3/3 == 3/3 + 2/3): the lower id goes first.
    cands = [Candidate("d", T3, 1), Candidate("b", T1, 3)]
    scored = score_for_deletion(cands)
    assert [c.id for c, _ in scored] == ["b", "d"]
    assert scored[0][1] == scored[1][1]


def test_all_never_used_gives_finite_scores() -> None:
    cands = [Candidate("q", None, 0), Candidate("p", None, 0)]
    scored = score_for_deletion(cands)
    assert [c.id for c, _ in scored] == ["p", "q"]
    assert all(s == 2.0 for _, s in scored)


def test_empty_ranking() -> None:
    assert rank_for_deletion([]) == []
    assert score_for_deletion(()) == []


def _gc_rounds(cands: list[Candidate], limit: int | None) -> list[str]:
    """The manager's GC loop, at the ranking level: one record per round, re-ranked."""
    remaining = list(cands)
    total = sum(c.size for c in remaining)
    removed: list[str] = []
    while remaining and not should_stop(total, limit):
        victim = rank_for_deletion(remaining)[0]
        remaining.remove(victim)
        total -= victim.size
        removed.append(victim.id)
    return removed


def test_gc_ranking_rounds_test_36() -> None:
    opts = PruneOptions(max_used_space=25)
    cands = _worked_example()
    limit = keep_limit(sum(c.size for c in cands), None, opts)
    assert _gc_rounds(cands, limit) == ["a", "c"]


def test_gc_one_per_round_test_37() -> None:
    cands = [Candidate("x", T1, 1, 10), Candidate("y", T2, 1, 20), Candidate("z", T3, 1, 30)]
    assert _gc_rounds(cands, keep_limit(60, None, PruneOptions(max_used_space=35))) == ["x", "y"]


def test_gc_boundary_at_or_below_deviation_test_38() -> None:
    # BuildKit removes Z too (30 is not < 30); cachetui stops at the limit.
    cands = [Candidate("x", T1, 1, 10), Candidate("y", T2, 1, 20), Candidate("z", T3, 1, 30)]
    assert _gc_rounds(cands, keep_limit(60, None, PruneOptions(max_used_space=30))) == ["x", "y"]


# --- defaults: buildkitd's default GC policies ------------------------------------------


def test_percent_of_disk_rounds_up_to_decimal_gb() -> None:
    assert percent_of_disk(DiskStat(total=50 * GIB, free=0), 10) == 6 * GB
    assert percent_of_disk(DiskStat(total=50 * GIB, free=0), 80) == 41 * GB
    assert percent_of_disk(DiskStat(total=0, free=0), 20) == DEFAULT_CAP
    assert percent_of_disk(None, 20) == 2 * GB
    assert percent_of_disk(DiskStat(total=50 * GIB, free=0), 0) == 0


def test_default_gc_policies_small_disk() -> None:
    policies = default_gc_policies(DiskStat(total=50 * GIB, free=20 * GIB))
    assert len(policies) == 4
    tier1, tier2, tier3, tier4 = policies
    assert tier1 == PruneOptions(
        filters=("type==source.local", "type==exec.cachemount", "type==source.git.checkout"),
        keep_duration=48 * 3600,
        max_used_space=512_000_000,
    )
    space = {"reserved_space": 6 * GB, "max_used_space": 41 * GB, "min_free_space": 11 * GB}
    assert tier2 == PruneOptions(keep_duration=60 * 86400, **space)
    assert tier3 == PruneOptions(**space)
    assert tier4 == PruneOptions(all=True, **space)


def test_default_gc_policies_large_disk_caps() -> None:
    _, tier2, _, tier4 = default_gc_policies(DiskStat(total=500 * GB, free=0))
    assert tier2.reserved_space == 10 * GB  # min(47 GB, 10 GB)
    assert tier2.max_used_space == 100 * GB  # min(373 GB, 100 GB)
    assert tier2.min_free_space == 94 * GB  # 20 %: 100e9 // 2**30 = 93 -> 94 GB
    assert tier4.all


def test_default_gc_policies_unknown_disk() -> None:
    for dstat in (None, DiskStat(total=0, free=0)):
        _, _, tier3, _ = default_gc_policies(dstat)
        assert tier3 == PruneOptions(
            reserved_space=2 * GB, max_used_space=2 * GB, min_free_space=2 * GB
        )


def test_disk_stat_reads_statvfs(tmp_path: os.PathLike[str]) -> None:
    st = os.statvfs(tmp_path)
    dstat = disk_stat(tmp_path)
    assert dstat.total == st.f_frsize * st.f_blocks
    assert 0 <= dstat.free <= dstat.total
