"""``doctor --rebuild``: new metadata from what can be read, and the layers on disk.

The only repair for damaged metadata (a file SQLite cannot read, rows that fail the
integrity check or contradict each other, an empty file while layers exist). It deletes
nothing:

1. every record and holder row that can still be read (whole, or row by row around
   damaged pages) and holds valid values is salvaged;
2. the damaged files (``metadata.db`` and its ``-wal``/``-shm``) are moved aside as
   ``metadata.db.damaged-<time>`` (kept, never deleted);
3. a fresh database gets the salvaged rows, made consistent: a parent that has neither a
   row nor a layer comes back as a "missing" placeholder (its descendants then show as
   "broken"), a pair whose mutable half is lost keeps its own layer, and every
   layer-named directory that no row names gets a record of its own (its parent and
   description are not known: said in the findings);
4. it replaces ``metadata.db`` with one rename.

Run it while no other process uses the store (the damaged store refuses every write, so
nothing else can be in the middle of a change).
"""

from __future__ import annotations

import math
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from cachetui.core import reserve
from cachetui.core.errors import StoreError
from cachetui.core.ids import ID_PATTERN
from cachetui.core.processes import is_alive
from cachetui.core.reconcile import Finding
from cachetui.core.recordstore import SIDE_TABLES, fill_rebuilt, salvage
from cachetui.core.snapshots import check_own_directories
from cachetui.core.store import RECORD_COLUMNS, Store

__all__ = ["rebuild"]

_COLUMNS = [c.strip() for c in RECORD_COLUMNS.split(",")]
_RECOVERED = "recovered by doctor --rebuild"
_LOST_PARENT = "lost in a metadata rebuild: its layer is missing"
_MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z


def _valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _plausible(value: object) -> bool:
    """A timestamp a datetime can show (years 1970 to 9999)."""
    return _finite(value) and 0 <= value < _MAX_EPOCH  # type: ignore[operator]


def _clean_record(values: tuple[Any, ...]) -> dict[str, Any] | None:
    """A record row as a dict, or None when its values cannot be trusted."""
    if len(values) != len(_COLUMNS):
        return None
    row = dict(zip(_COLUMNS, values, strict=True))
    for key in ("id", "parent", "equal_mutable"):
        # An id stored as a blob of its own text keeps its link: dropping the row would
        # bring the layer back as a root, and its parent could then be pruned under it.
        if isinstance(row[key], bytes):
            try:
                row[key] = row[key].decode("ascii")
            except UnicodeDecodeError:
                pass
    if not _valid_id(row["id"]):
        return None
    for key in ("parent", "equal_mutable"):
        if row[key] is not None and not _valid_id(row[key]):
            return None
    for key in ("mutable", "retain", "deleted", "pending_use"):
        if row[key] not in (0, 1):
            return None
    if not isinstance(row["description"], str) or not isinstance(row["record_type"], str):
        return None
    if not _plausible(row["created_at"]):
        row["created_at"] = None  # filled from the layer's mtime: the row itself is fine
    if row["last_used_at"] is not None and not _plausible(row["last_used_at"]):
        row["last_used_at"] = None
    if not isinstance(row["usage_count"], int) or row["usage_count"] < 0:
        row["usage_count"] = 0
    if not isinstance(row["size"], int):
        row["size"] = -1
    if not isinstance(row["apparent_size"], int) or row["size"] < 0:
        row["apparent_size"] = -1
    return row


Salvage = tuple[
    list[dict[str, Any]], list[tuple[Any, ...]], dict[str, list[tuple[Any, ...]]], list[str]
]


def _salvage(db: Path) -> Salvage:
    """(valid record rows, holder rows, side-table rows by table, what could not be read)."""
    notes: list[str] = []
    if not db.exists() or db.stat().st_size == 0:
        return [], [], {}, ["the metadata file was empty or missing: no row could be read"]
    try:
        found = salvage(db)
    except sqlite3.Error as err:
        return [], [], {}, [f"the metadata file cannot be opened ({err}): no row could be read"]
    records: list[dict[str, Any]] = []
    invalid = 0
    for values in found.records:
        row = _clean_record(values)
        if row is None:
            invalid += 1
        else:
            records.append(row)
    if found.unreadable:
        notes.append(f"{found.unreadable} record row(s) sat in damaged pages and could not be read")
    if invalid:
        notes.append(f"{invalid} record row(s) held values that are not valid: skipped")
    return records, found.holders, found.side, notes


def _layers(snapshots: Path) -> dict[str, float]:
    """Layer-named real directories under ``snapshots/``, with their mtimes."""
    found: dict[str, float] = {}
    try:
        entries = list(os.scandir(snapshots))
    except FileNotFoundError:
        return found
    for entry in entries:
        if ID_PATTERN.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            found[entry.name] = entry.stat(follow_symlinks=False).st_mtime
    return found


def _consistent(
    records: list[dict[str, Any]], layers: dict[str, float], findings: list[Finding]
) -> dict[str, dict[str, Any]]:
    """The salvaged live rows made consistent with each other and with the disk."""
    rows: dict[str, dict[str, Any]] = {}
    for row in records:
        if not row["deleted"] and row["id"] not in rows:
            rows[row["id"]] = row  # a tombstoned row's removal was asked for: let it go
    needed = {row["parent"] for row in rows.values()}
    for row in records:
        if row["deleted"] and row["id"] in needed and row["id"] not in rows:
            row["deleted"] = 0  # a live record stands on it: its removal cannot have been
            rows[row["id"]] = row
            findings.append(
                Finding("rebuild", row["id"], "marked removed under a live child: kept")
            )
    for row in rows.values():
        half = row["equal_mutable"]
        if half is not None and (half not in rows or not rows[half]["mutable"]):
            row["equal_mutable"] = None
            findings.append(
                Finding("rebuild", row["id"], "its pair half was lost: kept as a plain record")
            )
    placeholders: dict[str, dict[str, Any]] = {}
    for row in list(rows.values()):
        parent = row["parent"]
        if parent is None or parent in rows:
            if parent is not None and rows[parent]["mutable"]:
                row["parent"] = None
                findings.append(
                    Finding("rebuild", row["id"], f"its parent {parent} was mutable: unlinked")
                )
            continue
        if parent in layers:
            continue  # the parent's layer gets a record of its own below
        if parent not in placeholders:
            placeholders[parent] = {
                **row,
                "id": parent,
                "parent": None,
                "mutable": 0,
                "equal_mutable": None,
                "retain": 0,
                "description": _LOST_PARENT,
                "size": -1,
                "usage_count": 0,
                "last_used_at": None,
                "pending_use": 0,
                "apparent_size": -1,
            }
            findings.append(
                Finding("unrecovered", parent, "its row and layer are lost: listed as missing")
            )
    rows.update(placeholders)
    for rid, mtime in sorted(layers.items()):
        if rid in rows:
            continue
        rows[rid] = {
            "id": rid,
            "parent": None,
            "mutable": 0,
            "equal_mutable": None,
            "retain": 0,
            "description": _RECOVERED,
            "record_type": "regular",
            "created_at": mtime,
            "last_used_at": None,
            "usage_count": 0,
            "size": -1,
            "deleted": 0,
            "pending_use": 0,
            "apparent_size": -1,
        }
        findings.append(
            Finding(
                "unrecovered",
                rid,
                "layer without a readable record: recovered as a record of its own "
                "(its parent, description and type are not known)",
            )
        )
    _break_loops(rows, findings)
    for row in rows.values():
        if row["created_at"] is None:
            row["created_at"] = layers.get(row["id"], time.time())
            findings.append(Finding("rebuild", row["id"], "its creation time was unreadable"))
    return rows


def _break_loops(rows: dict[str, dict[str, Any]], findings: list[Finding]) -> None:
    settled: set[str] = set()
    for start in rows:
        path: list[str] = []
        current: str | None = start
        while current is not None and current not in settled and current in rows:
            if current in path:
                rows[current]["parent"] = None
                findings.append(Finding("rebuild", current, "its parent chain looped: unlinked"))
                break
            path.append(current)
            current = rows[current]["parent"]
        settled.update(path)


def _is_damaged(root: Path) -> bool:
    """Whether the store really needs a rebuild (opening it says so)."""
    from cachetui.core.manager import CacheManager

    try:
        with CacheManager.open(root, read_only=True, repair=False, forget_missing=True) as cm:
            return bool(cm.store.damaged)
    except StoreError:
        return True


def _new_private_file(directory: Path, prefix: str, *, like: Path) -> Path:
    """A new empty file under a name nobody could know in advance, created by this call
    (never a name already there: SQLite would follow a symlink planted at a predictable
    name and write the rebuilt records into whatever file it points at)."""
    fd, name = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        mode = like.stat().st_mode & 0o666 if like.exists() else 0o644
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return Path(name)


def _swap_in(db: Path, kept: Path, fresh: Path) -> None:
    """Move the damaged database (with its ``-wal`` and ``-shm``) to ``kept`` and the
    rebuilt one into its place: all of it, or none (a move that fails puts back those
    already made, so the store is never left without its metadata)."""
    moved: list[tuple[Path, Path]] = []
    try:
        for suffix in ("", "-wal", "-shm"):
            source, target = Path(f"{db}{suffix}"), Path(f"{kept}{suffix}")
            if not os.path.lexists(source):
                continue
            if os.path.lexists(target):
                raise StoreError(f"cannot keep the damaged metadata as {target}: it exists")
            try:
                os.rename(source, target)
            except OSError as err:
                raise StoreError(
                    f"cannot keep {source} as {target}: {os.strerror(err.errno or 0)}"
                ) from err
            moved.append((source, target))
        os.rename(fresh, db)
    except BaseException:
        for source, target in reversed(moved):
            os.rename(target, source)
        fresh.unlink(missing_ok=True)
        raise


def rebuild(root: str | os.PathLike[str]) -> list[Finding]:
    """Rebuild ``<root>/metadata.db`` (see the module docstring); deletes nothing."""
    base = Path(root)
    check_own_directories(base)
    db = base / "metadata.db"
    if not _is_damaged(base):
        return [Finding("rebuild", str(db), "the metadata is not damaged: nothing rebuilt", True)]
    findings: list[Finding] = []
    records, holders, side, notes = _salvage(db)
    layers = _layers(base / "snapshots")
    rows = _consistent(records, layers, findings)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = base / f"metadata.db.damaged-{stamp}"
    fresh = _new_private_file(base, f"metadata.db.rebuild-{stamp}-", like=db)
    side_rows = {
        table: [
            r
            for r in side.get(table, [])
            if len(r) == columns.count(",") + 1
            and r[0] in rows
            and all(isinstance(v, str) for v in r)
        ]
        for table, columns in SIDE_TABLES.items()
    }
    alive = [
        h
        for h in holders
        if len(h) == 7 and h[1] in rows and isinstance(h[2], int) and is_alive(*h[2:5])
    ]
    try:
        store = Store(fresh)
        try:
            fill_rebuilt(
                store, [tuple(row[c] for c in _COLUMNS) for row in rows.values()], side_rows, alive
            )
        finally:
            store.close()
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise
    finally:
        # The fresh file's own disk-full reserve: the store's is set aside at its next open.
        reserve.release(str(fresh))
    _swap_in(db, kept, fresh)
    salvaged = sum(1 for row in rows.values() if row["description"] not in (_RECOVERED,))
    findings.insert(0, Finding("rebuild", str(db), f"damaged metadata kept as {kept}", True))
    findings.insert(
        1,
        Finding(
            "rebuild",
            str(db),
            f"rebuilt: {len(records)} record row(s) salvaged, {len(rows)} record(s) now "
            f"({salvaged} from rows, {len(rows) - salvaged} from layers on disk)",
            True,
        ),
    )
    for note in notes:
        findings.append(Finding("unrecovered", str(db), note))
    return findings
