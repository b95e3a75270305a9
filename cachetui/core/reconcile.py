"""Reconciling the metadata with the disk: at a writable open, and on demand (``doctor``).

Opening never forgets a record (core-api.md, "Reopening after trouble"). A writable open
only finishes what a crash left half done, inside one write transaction (so no other
process is half way through a prepare, a finalize or a removal):

* holders whose process is gone are reaped;
* half-finalized pairs (the immutable's layer exists, the mutable's is gone) are finished;
* removals whose transaction never committed (a live row, its layer renamed ``rm-*``) are
  rolled back: the layer gets its name again;
* tombstoned records are finished; ``new-*`` and ``rm-*`` leftovers are removed.

Before any of that touches the disk, SQLite's full ``integrity_check`` must pass: damaged
metadata never drives a repair. A record whose layer is missing stays listed ("missing",
its descendants "broken"); ``doctor`` reports it and ``doctor(fix=True)`` drops it.

``doctor(fix=True)`` decides and acts inside the store's write lock, from rows and a
directory listing read inside it. Directories that no row names are never deleted: they
move to ``<root>/lost+found/`` (with their sizes in the findings), and only when they are
older than the fix itself. A store that looks unmounted is never "fixed" unless
``forget_missing`` says the layers are really gone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import filterfalse
from pathlib import Path

from cachetui.core import filesystems, opencheck, usage
from cachetui.core import snapshots as snapshots_module
from cachetui.core.context import StoreContext
from cachetui.core.errors import SnapshotError, StoreError
from cachetui.core.snapshots import STAGING_PREFIX, TRASH_PREFIX
from cachetui.core.state import load_state

__all__ = ["Finding", "at_open", "doctor", "health_of", "reconcile"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing reconcile or doctor noticed; ``fixed`` says whether it was repaired."""

    kind: str
    subject: str
    message: str
    fixed: bool = False


def health_of(seen: opencheck.Inspection) -> dict[str, str]:
    """ "missing" or "broken" for every live record that is not "ok"."""
    health = {rid: "missing" for rid in seen.missing()}
    for start in seen.parent_of:
        if start in health:
            continue
        path: list[str] = []
        current: str | None = start
        verdict = "ok"
        while current is not None:
            if current in health:
                verdict = "broken"
                break
            if current in path:  # a loop: damage, reported elsewhere
                break
            path.append(current)
            parent = seen.parent_of.get(current)
            if parent is not None and parent not in seen.parent_of:
                verdict = "broken"
                break
            current = parent
        if verdict == "broken":
            for rid in path:
                health[rid] = "broken"
    return {rid: state for rid, state in health.items() if state != "ok"}


def _plan(seen: opencheck.Inspection, tombstoned: list[str]) -> tuple[list[str], list[str]]:
    """The crash shapes to finish: (half-finalized immutables, layers to rename back)."""
    half_finalized = [
        rid
        for rid, mutable_id in seen.pair_of.items()
        if mutable_id not in seen.names and rid in seen.names
    ]
    # the records not listed under their own name, found at C speed (normally only
    # pending commits' immutables, whose layer is the mutable's)
    unlisted = filterfalse(seen.names.__contains__, seen.parent_of)
    unretire = [
        rid for rid in unlisted if rid not in seen.pair_of and f"{TRASH_PREFIX}{rid}" in seen.names
    ]
    return half_finalized, unretire


def _leftovers(seen: opencheck.Inspection, unretired: set[str]) -> list[str]:
    """``new-*`` (only a crash leaves one: prepare stages inside the write lock) and
    ``rm-*`` whose record is not live (its removal was asked for)."""
    found = []
    # a live record's name is its layer, never a leftover (a live id is never one of
    # these names: no prefix is an id): the rest are few
    for name in seen.names.difference(seen.parent_of):
        if name.startswith(STAGING_PREFIX):
            found.append(name)
        elif name.startswith(TRASH_PREFIX):
            rid = name[len(TRASH_PREFIX) :]
            if rid not in unretired and rid not in seen.parent_of:
                found.append(name)
    return sorted(found)


def at_open(
    context: StoreContext,
    *,
    repair: bool = True,
    forget_missing: bool = False,
    keep_picture: bool = False,
) -> list[Finding]:
    """What every open does: finish crashes (writable, ``repair``, healthy), then warnings."""
    findings: list[Finding] = []
    if context.store.damaged:
        findings.append(
            Finding(
                "degraded",
                "metadata.db",
                "metadata damaged: opened read-only, writes refused; "
                "`cachetui doctor --rebuild` rebuilds it from the layers",
            )
        )
    elif repair and not context.read_only:
        findings = reconcile(
            context, check=True, forget_missing=forget_missing, keep_picture=keep_picture
        )
        if context.store.damaged:
            return at_open(context, repair=False)
    fstype = filesystems.filesystem_type(context.root)
    if filesystems.is_network_filesystem(fstype):
        # WAL needs every process on one host; locks over NFS/SMB are unreliable.
        findings.append(
            Finding(
                "network-filesystem",
                str(context.root),
                f"the store is on {fstype}: use it from one host only "
                "(SQLite WAL and locking are not safe across machines)",
            )
        )
    return findings


def _damaged(context: StoreContext) -> list[Finding] | None:
    """Full integrity check before a repair; on failure the store goes degraded."""
    problems = context.store.integrity_problems(full=True)
    if not problems:
        return None
    context.store.damaged = problems
    return [
        Finding(
            "degraded",
            "metadata.db",
            "integrity check failed: nothing repaired, writes refused; "
            "`cachetui doctor --rebuild` rebuilds it from the layers",
        )
    ]


def reconcile(
    context: StoreContext,
    *,
    check: bool = False,
    forget_missing: bool = False,
    keep_picture: bool = False,
) -> list[Finding]:
    """Finish or undo what a crash or a dead process left (see the module docstring).

    ``check`` (at open): first make the open's checks on the same read, inside the
    write: damage makes the store degraded (nothing done), a store that looks unmounted
    is refused (``StoreError``, nothing written) unless ``forget_missing``.
    ``keep_picture`` (with ``check``): that read is the whole picture, kept for the
    first reader (``StoreContext.picture``) while nothing changes; otherwise it is only
    the rows' shape (cheaper for an open that reads nothing else, a prune's).
    """
    findings: list[Finding] = []
    snapshots, store, records = context.snapshots, context.store, context.records
    with records.write():
        if check:
            problems = store.integrity_problems(full=False)
            if problems:
                store.damaged = problems
                return []
            picture = None
            if keep_picture:
                # The whole picture, read once: the checks use its shape, and the first
                # reader after the open (a dashboard) takes it instead of reading it
                # again. (That reader orders what it shows itself: the table's order.)
                picture = load_state(records, include_deleted=True, ordered=False)
                seen = opencheck.inspect_state(picture, snapshots.dir)
            else:
                seen = opencheck.inspect(records, snapshots.dir)
            problems = seen.problems()
            if problems:
                store.damaged = problems
                return []
            message = seen.unmounted_message()
            if message is not None and not forget_missing:
                raise StoreError(message)
            if picture is not None and picture.parent_ids is not None:  # all rows live
                context.hand_on(picture, seen.layer_dirs)
        else:
            seen = opencheck.inspect(records, snapshots.dir)
        tombstoned = records.tombstoned_ids()
        half_finalized, unretire = _plan(seen, tombstoned)
        leftovers = _leftovers(seen, set(unretire))
        if half_finalized or unretire or tombstoned or leftovers:
            # Layers are about to move: the picture's listing would no longer be true.
            # (A change of rows needs no care: the picture checks for one when taken.)
            context.drop_handed_on()
            degraded = _damaged(context)
            if degraded is not None:
                return degraded  # nothing written yet: the transaction commits empty
        reaped = records.reap_dead_holders()
        if reaped:
            findings.append(Finding("stale-holder", "-", f"reaped {reaped} dead holder(s)", True))
        for rid in half_finalized:
            # finalize renamed the layer, then died before its rows committed
            records.unpair(rid)
            records.drop_record(seen.pair_of[rid])
            findings.append(
                Finding("half-finalized", rid, "finished an interrupted finalize", True)
            )
        for rid in unretire:
            # A removal whose tombstone never committed: the row is live, the layer
            # comes back.
            snapshots.unretire(rid)
            findings.append(Finding("rolled-back-removal", rid, "restored its layer", True))
        for rid in tombstoned:
            records.drop_holders_of(rid)
            snapshots.retire(rid)
    trash = [snapshots.dir / name for name in leftovers]
    trash += [p for rid in tombstoned if (p := snapshots.trash_path(rid)) not in trash]
    mounted = snapshots.mount_refusals({p.name for p in trash}) if trash else {}
    failures = snapshots.purge(trash) if trash else []
    failed = {str(path) for path, _ in failures}
    for path, err in failures:
        if path.name in mounted:
            findings.append(_mounted_leftover(path.name, mounted[path.name][1]))
        else:
            findings.append(Finding("leftover", path.name, f"could not remove: {err}"))
    records.drop_tombstoned(
        [rid for rid in tombstoned if str(snapshots.trash_path(rid)) not in failed]
    )
    for name in leftovers:
        if str(snapshots.dir / name) not in failed:
            findings.append(
                Finding("leftover", name, "removed an interrupted operation's leftover", True)
            )
    return findings


def _bad_size(value: object) -> str:
    return f"stored size {value!r} is not a size this store's disks could hold"


def _kept_for_mounts(
    context: StoreContext, seen: opencheck.Inspection, health: dict[str, str]
) -> dict[str, str]:
    """The records ``doctor --fix`` must not forget although missing or broken: those
    whose layer has a filesystem mounted in it (reported once, as ``mounted-layer``:
    the operator must unmount it), and their ancestors (forgetting one would leave a
    live record with no parent row). Each maps to the mounted layer that keeps it."""
    layer_of = {rid: seen.pair_of.get(rid, rid) for rid in health}
    mounted = context.snapshots.mount_refusals(set(layer_of.values())) if health else {}
    kept: dict[str, str] = {}
    for rid, layer in layer_of.items():
        if layer not in mounted:
            continue
        current: str | None = rid
        while current is not None and current in health and current not in kept:
            kept[current] = layer
            current = seen.parent_of.get(current)
    return kept


def _fix_sizes(context: StoreContext, seen: opencheck.Inspection) -> list[Finding]:
    """Measure each live record whose stored size is garbage and store what was
    measured (-1, "unknown", when a mount inside the layer keeps it from being exact)."""
    findings: list[Finding] = []
    for rid, value in context.records.bad_sizes():
        name = seen.layer_holder(rid)
        if name is None:
            continue  # its layer is missing: reported (and fixed) as such
        measured = context.snapshots.measure_name(name)
        size = measured.size if measured.complete else -1
        apparent = measured.apparent_size if measured.complete else -1
        context.records.store_sizes({rid: size}, {rid: apparent})
        done = f"{measured.size} bytes" if measured.complete else "unknown (not exact)"
        message = f"{_bad_size(value)}: measured again, stored {done}"
        findings.append(Finding("bad-size", rid, message, True))
    return findings


def _mounted_leftover(name: str, reason: str) -> Finding:
    """A staging or trash directory with a filesystem mounted in it (or mounted on it):
    never removed, whatever the kernel says about mount roots; the operator unmounts."""
    return Finding(
        "mounted-layer",
        name,
        f"{reason}; left alone (not removed): the operator must unmount it",
    )


#: Why doctor leaves a directory without a record alone when a filesystem is mounted in it.
MOUNTED_UNKNOWN = "a filesystem is mounted in it: left alone, the operator must unmount it"


def _same_device(path: Path, root: Path) -> bool:
    try:
        return os.lstat(path).st_dev == os.stat(root).st_dev
    except OSError:
        return False


def _movable(snapshots_dir: Path, name: str) -> bool:
    """Only a real directory with a layer's name, on the store's own filesystem."""
    path = snapshots_dir / name
    return (
        snapshots_module.DirectorySnapshotter.looks_like_layer(name)
        and os.path.isdir(path)
        and not os.path.islink(path)
        and _same_device(path, snapshots_dir)
    )


def _mounted(
    context: StoreContext, seen: opencheck.Inspection, unknown: Sequence[str]
) -> tuple[list[Finding], set[str]]:
    """Layers (of records, and directories no record names) with a filesystem mounted in
    them, or that are mount points themselves: a finding for each record's, and the
    unknown names to leave alone. Prune refuses such a layer; nothing here moves or
    removes one either (its files may live outside the store): the operator unmounts it.
    """
    layers = set(seen.named_layers())
    mounted = context.snapshots.mount_refusals(layers | set(unknown))
    findings = [
        Finding(
            "mounted-layer",
            rid,
            f"{mounted[rid][1]}; prune keeps it and doctor leaves it: the operator must unmount it",
        )
        for rid in sorted(layers & set(mounted))
    ]
    return findings, set(unknown) & set(mounted)


def _report(context: StoreContext, seen: opencheck.Inspection) -> list[Finding]:
    """Everything doctor says about rows against the disk (no change)."""
    findings: list[Finding] = []
    state = context.state(include_deleted=True)
    for holder in state.holders:
        if not holder.alive:
            message = f"holder pid {holder.pid} on {holder.host} is gone"
            findings.append(Finding("stale-holder", holder.record, message))
    health = health_of(seen)
    for rid in sorted(health):
        if health[rid] == "missing":
            layer = context.snapshots.dir / seen.pair_of.get(rid, rid)
            message = f"its layer directory {layer} is missing"
            findings.append(Finding("missing-layer", rid, message))
        else:
            findings.append(Finding("broken", rid, "an ancestor's layer is missing"))
    for rid, column, value in context.records.bad_timestamps():
        message = f"{column} is {value!r}, not a time (shown as unknown)"
        findings.append(Finding("bad-timestamp", rid, message, False))
    for rid, value in context.records.bad_sizes():
        findings.append(Finding("bad-size", rid, _bad_size(value) + " (measured again)"))
    for rid, row in sorted(state.rows.items()):
        if row.deleted:
            findings.append(Finding("tombstone", rid, "removal not finished"))
    trash = sorted(n for n in seen.names if n.startswith((STAGING_PREFIX, TRASH_PREFIX)))
    mounted_trash = context.snapshots.mount_refusals(set(trash)) if trash else {}
    for name in trash:
        if name in mounted_trash:
            findings.append(_mounted_leftover(name, mounted_trash[name][1]))
        else:
            findings.append(Finding("leftover", name, "staging or trash directory"))
    named = set(seen.parent_of) | seen.odd_deleted.keys()  # damaged rows still name theirs
    unknown = sorted(context.snapshots.unknown(named, seen.names))
    mounted_findings, mounted = _mounted(context, seen, unknown)
    findings += mounted_findings
    for name in unknown:
        message = "directory without a record"
        if name in mounted:
            message += f" ({MOUNTED_UNKNOWN})"
        elif not _movable(context.snapshots.dir, name):
            message += " (not a layer name or not on this filesystem: left alone)"
        findings.append(Finding("unknown-dir", name, message))
    return findings


def doctor(
    context: StoreContext,
    open_findings: Sequence[Finding] = (),
    *,
    fix: bool = False,
    forget_missing: bool = False,
) -> list[Finding]:
    """Check the store; with ``fix``, repair what is safe (never deleting a layer).
    ``open_findings`` (what opening found) come first."""
    findings: list[Finding] = list(open_findings)
    store = context.store
    problems = store.integrity_problems(full=True)
    for message in problems:
        findings.append(Finding("integrity", "metadata.db", message))
    for message in store.damaged:
        if message not in problems:
            findings.append(Finding("damaged", "metadata.db", message))
    seen = opencheck.inspect(context.records, context.snapshots.dir)
    inconsistent = [] if store.damaged else seen.problems()
    for message in inconsistent:
        findings.append(Finding("inconsistent", "metadata.db", message))
    if not fix or problems or inconsistent or context.read_only:
        return findings + _report(context, seen)
    fixed = _fix(context, forget_missing=forget_missing)
    # The fix finishes crashes again (reconcile), as the open did: what the open already
    # said and the fix found again (a leftover that cannot be removed) is said once.
    again = set(fixed)
    return [f for f in findings if f not in again] + fixed


def _fix(context: StoreContext, *, forget_missing: bool) -> list[Finding]:
    """``doctor --fix``: decided and done inside the write lock (see the module doc)."""
    started = time.time()  # wall clock: compared with the directories' ctime
    snapshots, records = context.snapshots, context.records
    findings: list[Finding] = [f for f in reconcile(context) if f.kind != "stale-holder"]
    moved: list[tuple[str, Path]] = []  # (name, new path)
    with records.write():
        seen = opencheck.inspect(records, snapshots.dir)
        reaped = records.reap_dead_holders()
        if reaped:
            findings.append(Finding("stale-holder", "-", f"reaped {reaped} dead holder(s)", True))
        health = health_of(seen)
        unmounted = seen.unmounted_message()
        if health and unmounted is not None and not forget_missing:
            findings.append(Finding("unmounted", str(snapshots.dir), unmounted))
            for rid in sorted(health):
                findings.append(Finding(f"{health[rid]}-layer", rid, "left as it is"))
            health = {}
        kept = _kept_for_mounts(context, seen, health)
        for rid in sorted(kept):
            if seen.pair_of.get(rid, rid) != kept[rid]:  # kept for a descendant's mount
                message = "left as it is: a record built on it has a filesystem mounted in "
                message += "its layer (the operator must unmount it)"
                findings.append(Finding(f"{health[rid]}-layer", rid, message))
        forgotten = sorted(set(health) - set(kept))
        for rid in forgotten:
            records.drop_record(rid)
            if health[rid] == "missing":
                layer = snapshots.dir / seen.pair_of.get(rid, rid)
                message = f"its layer directory {layer} is missing: record forgotten"
                findings.append(Finding("missing-layer", rid, message, True))
            else:
                findings.append(
                    Finding("broken", rid, "an ancestor's layer is missing: record forgotten", True)
                )
        findings += _fix_sizes(context, seen)
        named = (set(seen.parent_of) - set(forgotten)) | seen.odd_deleted.keys()
        unknown = sorted(snapshots.unknown(named, seen.names))
        mounted_findings, mounted = _mounted(context, seen, unknown)
        findings += mounted_findings
        for name in unknown:
            if name in mounted:
                message = f"directory without a record ({MOUNTED_UNKNOWN})"
                findings.append(Finding("unknown-dir", name, message))
                continue
            if not _movable(snapshots.dir, name):
                message = "directory without a record (not a layer name or not on this "
                message += "filesystem: left alone)"
                findings.append(Finding("unknown-dir", name, message))
                continue
            try:
                target = snapshots.move_to_lost_found(name, older_than=started)
            except SnapshotError as err:
                findings.append(Finding("unknown-dir", name, f"could not move: {err}"))
                continue
            if target is None:  # gone, or changed since this fix began: not ours to move
                continue
            moved.append((name, target))
    for name, target in moved:  # measured after the lock is gone: it may take a while
        size = usage.measure(target).size
        message = f"directory without a record: moved to {target} ({size} bytes)"
        findings.append(Finding("unknown-dir", name, message, True))
    return findings
