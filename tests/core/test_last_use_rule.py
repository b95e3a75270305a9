"""BuildKit's "last used only if used" rule has one home, ``RecordRow.last_use``: a use
time stored without a use count means never used, for disk usage, prune's keep duration,
the GC plan's effective age and the fleet's "used since you confirmed"."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta
from pathlib import Path

from cachetui.core import CacheManager, PruneOptions

PACKAGE = Path(__file__).resolve().parents[2] / "cachetui"

#: Any spelling of "a use time only beside a use count": ``last_used_at if ...count``,
#: ``usage_count and ... last_used_at``, ``... if ... count else None``.
RULE = re.compile(
    r"last_used_at\s+if\b.*\bcount\b"
    r"|\busage_count\s+and\b.*\blast_used_at\b"
    r"|\bif\s+[\w.]*count\s+else\s+None\b"
)


def test_a_use_time_without_a_use_count_means_never_used(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    with CacheManager.open(tmp_path / "s", clock=lambda: now[0]) as cm:
        ref = cm.new(description="old")
        (ref.mount().upper / "f").write_bytes(b"x" * 4096)
        imm = ref.commit()
        imm.finalize()
        imm.release()
        rid = imm.id
    # A stray use time (a damaged or hand-edited row) with no use behind it.
    db = sqlite3.connect(tmp_path / "s" / "metadata.db")
    db.execute(
        "UPDATE record SET usage_count = 0, last_used_at = ? WHERE id = ?", (now[0] + 3000, rid)
    )
    db.commit()
    db.close()
    now[0] += 3600
    with CacheManager.open(tmp_path / "s", clock=lambda: now[0]) as cm:
        (info,) = [u for u in cm.disk_usage() if u.id == rid]
        assert info.last_used_at is None
        assert cm.records()[rid].last_used_at is None
        # Its age counts from its creation (an hour), not from the stray time (10 min).
        assert [u.id for u in cm.disk_usage(age_limit=timedelta(minutes=30))] == [rid]
        kept = cm.prune(PruneOptions(keep_duration=timedelta(minutes=30)), dry_run=True)
        assert [u.id for u in kept] == [rid]


def test_the_rule_is_written_once() -> None:
    home = "return self.last_used_at if self.usage_count else None"
    homes, copies = [], []
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not RULE.search(line) or "inlined" in line:
                continue
            where = f"{path.relative_to(PACKAGE)}:{number}"
            if path.name == "recordstore.py" and line.strip() == home:
                homes.append(where)
            else:
                copies.append(where)
    assert len(homes) == 1, f"RecordRow.last_use should be the rule's one home: {homes}"
    assert not copies, copies


def test_the_rule_pattern_catches_the_spellings_it_must() -> None:
    # The spellings earlier copies used, so the check above cannot pass by going blind.
    for spelling in (
        "last = self.last_used_at if self.usage_count else None",
        "if row.usage_count and row.last_used_at is not None",
        "last if count else None,",
        "stamp if r.usage_count else None",
    ):
        assert RULE.search(spelling), spelling
