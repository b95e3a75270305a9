"""A seeded store for the GC tests, with a scenario small enough to compute by hand.

Ages are relative to ``now``; every layer holds one file of ``units`` * 4096 bytes.

    name  type             parent  last use     notes
    B     regular          -       30 days ago  parent of C
    C     regular          B       1 hour ago
    L1    source.local     -       3 days ago
    L2    source.local     -       1 hour ago
    M     exec.cachemount  -       5 days ago
    R1    regular          -       90 days ago
    R2    regular          -       70 days ago
    I     internal         -       100 days ago
    H     regular          -       never        held by the process that seeds
"""

from __future__ import annotations

from pathlib import Path

from cachetui.core import CacheManager, ImmutableRef
from tests.conftest import FakeClock

HOUR = 3600.0
DAY = 24 * HOUR
UNIT = 4096

SCENARIO: dict[str, tuple[str, str | None, float | None, int]] = {
    # name: (type, parent, age of the last use (None: held, never used), units)
    "B": ("regular", None, 30 * DAY, 2),
    "C": ("regular", "B", 1 * HOUR, 1),
    "L1": ("source.local", None, 3 * DAY, 3),
    "L2": ("source.local", None, 1 * HOUR, 1),
    "M": ("exec.cachemount", None, 5 * DAY, 2),
    "R1": ("regular", None, 90 * DAY, 4),
    "R2": ("regular", None, 70 * DAY, 2),
    "I": ("internal", None, 100 * DAY, 1),
    "H": ("regular", None, None, 1),
}


def seed(
    cm: CacheManager, clock: FakeClock, now: float
) -> tuple[dict[str, str], list[ImmutableRef]]:
    """Build the scenario; returns name -> id and the handles still held (H)."""
    ids: dict[str, str] = {}
    refs: dict[str, ImmutableRef] = {}
    held: list[ImmutableRef] = []
    # Oldest use first, so that releasing a parent never happens after its child's use.
    order = sorted(SCENARIO, key=lambda n: -(SCENARIO[n][2] or 0))
    for name in order:
        kind, parent, age, units = SCENARIO[name]
        clock.now = now - (age if age is not None else 200 * DAY)
        if parent is not None:
            clock.now = now - SCENARIO[parent][2]  # type: ignore[operator]
        layer = cm.new(refs.get(parent) if parent else None, record_type=kind, description=name)
        (layer.mount().upper / "data").write_bytes(b"x" * units * UNIT)
        ref = layer.commit()
        ref.finalize()
        ids[name] = ref.id
        refs[name] = ref
    # Releases in time order: B (30 d) before C (1 h) so B's last use stays 30 d ago.
    for name in sorted(SCENARIO, key=lambda n: -(SCENARIO[n][2] or -1)):
        age = SCENARIO[name][2]
        if age is None:
            held.append(refs[name])
            continue
        clock.now = now - age
        refs[name].release()
    clock.now = now
    return ids, held


def open_seeded(
    root: Path, now: float
) -> tuple[CacheManager, FakeClock, dict[str, str], list[ImmutableRef]]:
    clock = FakeClock(now)
    cm = CacheManager.open(root, clock=clock)
    ids, held = seed(cm, clock, now)
    return cm, clock, ids, held


POLICY_TOML = """\
[[tier]]
name = "reproducible sources"
filters = ["type==source.local", "type==exec.cachemount"]
keep-duration = "48h"

[[tier]]
name = "unused for 60 days, under a cap"
keep-duration = "60d"
max-used-space = "{tier2}"

[[tier]]
name = "everything, under a cap"
all = true
max-used-space = "{tier3}"
"""
