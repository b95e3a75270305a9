"""A small store with fixed content, fixed ids and a fixed clock, for UI tests and
screenshots. Ids come from a counter (``new_id`` is patched while building), sizes are
cached through the core API, and holders of "other processes" are rows naming a process
on another host (always considered alive), so nothing depends on this machine."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from cachetui.core import CacheManager
from cachetui.core.policy import DiskStat

T0 = 1_790_000_000.0  # 2026-09-21
HOUR = 3600.0
DAY = 24 * HOUR
MB = 1_000_000


def fixed_disk_stat(_root: Path) -> DiskStat:
    return DiskStat(total=500 * 1000 * MB, free=123_456 * MB)


class FixedClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_id(name: str, n: int) -> str:
    stem = "".join(ch for ch in name.lower() if ch.isalnum())[:21]
    return f"{stem:0<21}{n:04d}"


def counter_ids(names: Iterator[str] | None = None) -> Callable[[], str]:
    """An ``id_factory``: readable, stable ids from a counter (and optional names)."""
    counter = iter(range(1, 10_000))

    def make() -> str:
        return make_id(next(names, "rec") if names else "rec", next(counter))

    return make


def build_fixture_store(root: Path) -> dict[str, str]:
    """Build the store; returns name -> id."""
    clock = FixedClock(T0 - 30 * DAY)
    names = iter(
        [
            "alpinemutable",
            "alpine",
            "aptmutable",
            "aptgetinstall",
            "pipmutable",
            "pipinstall",
            "localcontext",
            "npmci",
            "npmcicommit",
            "frontendmutable",
            "dockerfilefrontend",
            "makemutable",
            "makerelease",
            "gomodcache",
            "gobuildmutable",
            "gobuild",
            "gotestmutable",
            "gotest",
            "copydistmutable",
            "copydist",
            "stripmutable",
            "stripbinaries",
        ]
    )
    ids: dict[str, str] = {}
    sizes: dict[str, int] = {}
    with CacheManager.open(root, clock=clock, id_factory=counter_ids(names)) as cm:
        m = cm.new(description="FROM alpine:3.20")
        base = m.commit()
        base.finalize()
        ids["alpine"] = base.id
        sizes[base.id] = 8 * MB
        clock.now += HOUR
        m = cm.new(base, description="RUN apt-get install -y build-essential")
        apt = m.commit()
        apt.finalize()
        ids["apt"] = apt.id
        sizes[apt.id] = 312 * MB
        clock.now += HOUR
        m = cm.new(apt, description="RUN pip install -r requirements.txt")
        pip = m.commit()
        pip.finalize()
        ids["pip"] = pip.id
        sizes[pip.id] = 96_500_000
        clock.now += HOUR
        local = cm.new(base, description="local context", record_type="source.local", retain=True)
        ids["local"] = local.id
        local.release()
        clock.now += DAY
        npm = cm.new(apt, description="RUN npm ci")
        npm_commit = npm.commit()  # a pending commit, held: shows as the immutable
        ids["npm"] = npm_commit.id
        sizes[npm_commit.id] = 41 * MB
        clock.now += HOUR
        fe = cm.new(description="docker/dockerfile:1.9", record_type="frontend")
        fe_ref = fe.commit()
        fe_ref.finalize()
        ids["frontend"] = fe_ref.id
        sizes[fe_ref.id] = 1_250_000
        clock.now += HOUR
        old = cm.new(description="RUN make release (old)")
        old_ref = old.commit()
        old_ref.finalize()
        ids["old"] = old_ref.id
        sizes[old_ref.id] = 730 * MB
        gomod = cm.new(description="go mod cache", record_type="exec.cachemount", retain=True)
        ids["gomod"] = gomod.id
        gomod.release()
        # A chain six levels deep (alpine > apt > pip > build > test > dist > strip).
        parent = pip
        chain = []
        for name, description, size in (
            ("build", "RUN go build ./...", 5 * MB),
            ("test", "RUN go test ./...", 3 * MB),
            ("dist", "COPY --from=build /out /dist", 2 * MB),
            ("strip", "RUN strip /dist/*", 1 * MB),
        ):
            clock.now += HOUR
            layer = cm.new(parent, description=description).commit()
            layer.finalize()
            ids[name] = layer.id
            sizes[layer.id] = size
            chain.append(layer)
            parent = layer
        for ref in (base, apt, pip, fe_ref, old_ref, *chain):
            ref.release()
        sizes[ids["local"]] = 2_400_000
        sizes[ids["gomod"]] = 187 * MB
        cm.store_sizes(sizes)
        holders = [npm_commit.holder_id]
    db = sqlite3.connect(root / "metadata.db")
    with db:
        usage = {
            "alpine": (T0 - 2 * HOUR, 14),
            "apt": (T0 - 3 * HOUR, 9),
            "pip": (T0 - 20 * 60, 5),
            "local": (T0 - 2 * DAY, 3),
            "npm": (None, 0),
            "frontend": (T0 - 5 * 60, 21),
            "old": (T0 - 25 * DAY, 1),
            "gomod": (T0 - 6 * DAY, 2),
            "build": (T0 - 4 * HOUR, 3),
            "test": (T0 - 4 * HOUR, 3),
            "dist": (T0 - 5 * HOUR, 2),
            "strip": (T0 - 5 * HOUR, 2),
        }
        for name, (last, count) in usage.items():
            db.execute(
                "UPDATE record SET last_used_at = ?, usage_count = ? WHERE id = ?",
                (last, count, ids[name]),
            )
        db.execute("DELETE FROM holder")
        other = [
            (ids["pip"], 4242, "ci-runner-7", T0 - 40 * 60),
            (ids["npm"], 4343, "ci-runner-7", T0 - 12 * 60),
        ]
        for record, pid, host, since in other:
            db.execute(
                "INSERT INTO holder (record, pid, start, host, created_at, counts_use) "
                "VALUES (?, ?, ?, ?, ?, 1)",
                (record, pid, "boot:1", host, since),
            )
    db.close()
    del holders
    return ids
