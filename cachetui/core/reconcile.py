"""Reconciling the metadata with the disk: at every open, and on demand (``doctor``).

At open (inside one write transaction, so no other process is half way through a
prepare or a finalize):

* holders whose process is gone are reaped;
* half-finalized pairs (the immutable's layer exists, the mutable's is gone) are repaired;
* tombstoned records are finished;
* records whose layer is missing are dropped together with their descendants;
* ``new-*`` and ``rm-*`` leftovers are removed.

Directories that no row names are only reported. ``doctor(fix=True)`` removes them, and
only when they look like a layer (an id name) on the store's own filesystem, and only
when the database itself passes SQLite's integrity check: a damaged store never leads to
deleting snapshot data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cachetui.core import filesystems, fsops, timestamps
from cachetui.core.errors import SnapshotError
from cachetui.core.processes import is_alive
from cachetui.core.snapshots import TRASH_PREFIX
from cachetui.core.state import load_state

if TYPE_CHECKING:
    from cachetui.core.manager import CacheManager

__all__ = ["Finding", "at_open", "doctor", "reconcile"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing reconcile or doctor noticed; ``fixed`` says whether it was repaired."""

    kind: str
    subject: str
    message: str
    fixed: bool = False


def _reap_dead_holders(manager: CacheManager) -> int:
    dead = [
        (hid,)
        for hid, pid, start, host in manager.store.rows("SELECT id, pid, start, host FROM holder")
        if not is_alive(pid, start, host)
    ]
    if dead:
        manager.store.db.cursor().executemany("DELETE FROM holder WHERE id = ?", dead)
    return len(dead)


def _repair(manager: CacheManager, findings: list[Finding]) -> set[str]:
    """Inside a write: repair pairs, choose what to drop; returns ids to tombstone.

    Reads four narrow columns only: this runs at every open, over every record.
    """
    store = manager.store
    names = set(manager.snapshots.names())
    parent_of: dict[str, str | None] = {}
    pairs: dict[str, str] = {}  # immutable id -> its equal mutable
    for rid, parent, equal_mutable in store.rows(
        "SELECT id, parent, equal_mutable FROM record WHERE deleted = 0"
    ):
        parent_of[rid] = parent
        if equal_mutable is not None:
            pairs[rid] = equal_mutable
    drop: set[str] = set()
    for rid, mutable_id in pairs.items():
        if mutable_id in parent_of and mutable_id in names:
            continue
        if rid in names:  # finalize renamed the layer, then crashed before the rows
            store.execute("UPDATE record SET equal_mutable = NULL WHERE id = ?", (rid,))
            if mutable_id in parent_of:
                store.execute("DELETE FROM holder WHERE record = ?", (mutable_id,))
                store.execute("DELETE FROM record WHERE id = ?", (mutable_id,))
                parent_of.pop(mutable_id)
            findings.append(
                Finding("half-finalized", rid, "finished an interrupted finalize", True)
            )
        else:
            drop.add(rid)
    for rid in parent_of:
        trash = f"{TRASH_PREFIX}{rid}"
        if rid not in pairs and rid not in names and trash in names:
            # A removal whose tombstone never committed (a crash inside the write):
            # the row is live, so its layer comes back.
            manager.snapshots.unretire(rid)
            names.add(rid)
            names.discard(trash)
            findings.append(Finding("rolled-back-removal", rid, "restored its layer", True))
    missing = {
        rid
        for rid, parent in parent_of.items()
        if (rid not in pairs and rid not in names)
        or (parent is not None and parent not in parent_of)
    }
    for rid in sorted(missing):
        findings.append(
            Finding("missing-snapshot", rid, "layer or parent missing: record dropped", True)
        )
    drop |= missing
    if not drop:
        return set()
    children: dict[str, list[str]] = {}
    for rid, parent in parent_of.items():
        if parent is not None:
            children.setdefault(parent, []).append(rid)
    for rid, mutable_id in pairs.items():  # the immutable half goes with its mutable
        children.setdefault(mutable_id, []).append(rid)
    result: set[str] = set()
    stack = list(drop)
    while stack:
        current = stack.pop()
        if current in result or current not in parent_of:
            continue
        result.add(current)
        stack.extend(children.get(current, ()))
    return result


def at_open(manager: CacheManager) -> list[Finding]:
    """What every open does: repair (unless read-only or damaged), then warnings."""
    findings: list[Finding] = []
    if not manager.store.read_only:
        problems = manager.store.integrity_problems()
        if problems:
            # A damaged database never drives a repair that deletes data: its rows
            # may be wrong, so "no row names this directory" proves nothing.
            # Open degraded: reads work, every write is refused.
            manager.store.damaged = problems
            findings.append(
                Finding(
                    "degraded",
                    "metadata.db",
                    "integrity check failed: opened without repair, writes refused",
                )
            )
        else:
            findings = reconcile(manager)
    fstype = filesystems.filesystem_type(manager.root)
    if filesystems.is_network_filesystem(fstype):
        # WAL needs every process on one host; locks over NFS/SMB are unreliable.
        findings.append(
            Finding(
                "network-filesystem",
                str(manager.root),
                f"the store is on {fstype}: use it from one host only "
                "(SQLite WAL and locking are not safe across machines)",
            )
        )
    return findings


def reconcile(manager: CacheManager) -> list[Finding]:
    """Repair what a crash or a dead process left (see the module docstring)."""
    findings: list[Finding] = []
    snapshots = manager.snapshots
    with manager._lock, manager.store.write():
        reaped = _reap_dead_holders(manager)
        if reaped:
            findings.append(Finding("stale-holder", "-", f"reaped {reaped} dead holder(s)", True))
        drop = _repair(manager, findings)
        for rid in drop:
            descendant_note = "dropped with its parent"
            if not any(f.subject == rid for f in findings):
                findings.append(Finding("missing-snapshot", rid, descendant_note, True))
        if drop:
            manager.store.db.cursor().executemany(
                "UPDATE record SET deleted = 1 WHERE id = ?", [(rid,) for rid in drop]
            )
        tombstoned = [
            rid for (rid,) in manager.store.rows("SELECT id FROM record WHERE deleted = 1")
        ]
        for rid in tombstoned:
            manager.store.execute("DELETE FROM holder WHERE record = ?", (rid,))
            snapshots.retire(rid)
        leftovers = snapshots.leftovers()
        # new-* can only be a crash's leftover: prepare stages inside the write lock.
    trash = [snapshots.dir / name for name in leftovers]
    failures = snapshots.purge(trash) if trash else []
    failed = {str(path) for path, _ in failures}
    for path, err in failures:
        findings.append(Finding("leftover", path.name, f"could not remove: {err}"))
    finished = [rid for rid in tombstoned if str(snapshots.trash_path(rid)) not in failed]
    if finished:
        with manager._lock, manager.store.write():
            manager.store.db.cursor().executemany(
                "DELETE FROM record WHERE id = ? AND deleted = 1", [(rid,) for rid in finished]
            )
    for name in leftovers:
        if str(snapshots.dir / name) not in failed:
            findings.append(
                Finding("leftover", name, "removed an interrupted operation's leftover", True)
            )
    return findings


def _same_device(path: Path, root: Path) -> bool:
    try:
        return os.lstat(path).st_dev == os.stat(root).st_dev
    except OSError:
        return False


def doctor(manager: CacheManager, *, fix: bool = False) -> list[Finding]:
    """Integrity check of the store; with ``fix``, repair only what is safe."""
    findings: list[Finding] = list(manager.open_findings)
    problems = manager.store.integrity_problems()
    for message in problems:
        findings.append(Finding("integrity", "metadata.db", message))
    healthy = not problems
    state = load_state(manager.store, include_deleted=True)
    snapshots = manager.snapshots
    stale = [h for h in state.holders if not h.alive]
    for holder in stale:
        findings.append(
            Finding(
                "stale-holder",
                holder.record,
                f"holder pid {holder.pid} on {holder.host} is gone",
                fix and healthy,
            )
        )
    live = {rid: row for rid, row in state.rows.items() if not row.deleted}
    names = set(snapshots.names())
    for rid, row in sorted(live.items()):
        if row.equal_mutable is None and rid not in names:
            findings.append(Finding("missing-snapshot", rid, "record has no layer directory"))
        if row.parent is not None and row.parent not in live:
            findings.append(Finding("broken-parent", rid, f"parent {row.parent} has no record"))
        chain = state.chain(rid)
        last = state.rows.get(chain[-1])
        if last is not None and last.parent is not None and last.parent in chain:
            findings.append(Finding("cycle", rid, f"parent chain loops at {last.parent}"))
    for rid, column, value in timestamps.bad_rows(manager.store.rows):
        message = f"{column} is {value!r}, not a time (shown as unknown)"
        findings.append(Finding("bad-timestamp", rid, message, False))
    for rid, row in sorted(state.rows.items()):
        if row.deleted:
            findings.append(Finding("tombstone", rid, "removal not finished", False))
    for name in sorted(snapshots.leftovers()):
        findings.append(Finding("leftover", name, "staging or trash directory", False))
    unknown = sorted(snapshots.unknown(set(live)))
    removable: list[Path] = []
    for name in unknown:
        path = snapshots.dir / name
        safe = (
            snapshots.looks_like_layer(name)
            and not os.path.islink(path)
            and _same_device(path, snapshots.dir)
        )
        will_fix = fix and healthy and safe
        message = "directory without a record"
        if not safe:
            message += " (not a layer name or not on this filesystem: left alone)"
        findings.append(Finding("unknown-dir", name, message, will_fix))
        if will_fix:
            removable.append(path)
    if fix and healthy:
        with manager._lock, manager.store.write():
            if stale:
                manager.store.db.cursor().executemany(
                    "DELETE FROM holder WHERE id = ?", [(h.id,) for h in stale]
                )
        for path in removable:
            try:
                fsops.remove_tree(path)
            except SnapshotError as err:
                findings.append(Finding("unknown-dir", path.name, f"could not remove: {err}"))
        # Missing layers, tombstones and leftovers: the open-time repair does exactly that.
        findings = [f for f in findings if f.kind not in ("tombstone", "leftover")] + [
            f for f in reconcile(manager) if f.kind != "stale-holder"
        ]
    return findings
