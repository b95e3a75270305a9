"""What the store is checked for before anything trusts it: rows against rows, rows
against the layer directories on disk.

One narrow read of the record table and one listing of ``snapshots/`` give an
``Inspection``. From it:

* ``problems()``: rows inconsistent with each other (a parent or pair half with no row, a
  mutable parent, a parent chain that loops, an id that is not an id, a ``deleted``
  flag that is neither 0 nor 1). Such rows can only
  come from damage; the store then opens degraded (read-only) until ``doctor --rebuild``.
* ``missing()``: records whose layer directory is gone (their descendants are "broken").
  They stay listed; opening never forgets a record.
* ``unmounted_message()``: when ``snapshots/`` is absent, or more than half of the layers
  that rows name are missing, the disk is most likely not mounted: the store is refused
  rather than reported (or later repaired) as if the layers were gone.

A layer counts as present under its own name, as its pair half's (a finalize that crashed
after renaming the directory), or as ``rm-<id>`` (a removal whose transaction never
committed): those are crash shapes that the next write finishes or undoes, not losses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import filterfalse
from operator import itemgetter
from pathlib import Path
from typing import Any

from cachetui.core.ids import ID_LENGTH, ID_PATTERN
from cachetui.core.recordstore import RecordStore
from cachetui.core.snapshots import STAGING_PREFIX, TRASH_PREFIX, list_entries
from cachetui.core.state import StoreState

__all__ = ["Inspection", "inspect", "inspect_state", "list_snapshots"]

#: At most this many inconsistencies are spelled out (the rest are counted).
_MAX_PROBLEMS = 20
#: Only the characters of ids, and newlines.
_ID_TEXT = re.compile(r"[a-z0-9\n]*")


def list_snapshots(directory: Path) -> tuple[bool, set[str], set[str]]:
    """Whether ``snapshots/`` exists, every name directly under it, and the real
    directories among them (what can hold a layer's bytes)."""
    try:
        return (True, *list_entries(directory))
    except FileNotFoundError:
        return False, set(), set()


@dataclass
class Inspection:
    """The record table's shape (live rows) next to the names under ``snapshots/``."""

    directory: Path
    parent_of: dict[str, str | None]
    pair_of: dict[str, str]  # immutable id -> its equal mutable (live rows)
    mutable: set[str]
    all_ids: set[str]
    snapshots_exist: bool
    names: set[str]
    immutable_of: dict[str, str] = field(default_factory=dict)
    #: The names that are real directories (what can hold a layer's bytes).
    layer_dirs: set[str] = field(default_factory=set)
    #: Rows whose ``deleted`` is neither 0 nor 1, with the stored value: every live read
    #: (``deleted = 0``) hides them and no removal finishes them (``deleted = 1``), so
    #: a prune would take their parents' layers and a fix their own.
    odd_deleted: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.immutable_of = {m: i for i, m in self.pair_of.items()}

    # -- rows against rows --------------------------------------------------------------

    def problems(self) -> list[str]:
        """Rows that contradict each other (damage, never a crash shape)."""
        found: list[str] = [
            f"record {rid}: its deleted flag is {value!r}, neither 0 (live) nor 1 (removing)"
            for rid, value in sorted(self.odd_deleted.items())
        ]
        if not self._rows_look_sound():
            found.extend(self._row_problems())
        for rid, half in self.pair_of.items():
            if half not in self.parent_of:
                found.append(f"record {rid}: its pair half {half!r} has no row")
            elif half not in self.mutable:
                found.append(f"record {rid}: its pair half {half} is not mutable")
        found.extend(self._cycles())
        if len(found) > _MAX_PROBLEMS:
            extra = len(found) - _MAX_PROBLEMS
            found = [*found[:_MAX_PROBLEMS], f"... and {extra} more inconsistent rows"]
        return found

    def _rows_look_sound(self) -> bool:
        """Every live id well formed and every parent a live immutable row, checked
        with whole-set operations (100,000 rows: a few milliseconds, not a loop)."""
        live = self.parent_of
        if live:
            # one line per id: every line 25 characters of the alphabet when the text
            # has that length, only those characters and newlines, and a newline
            # exactly after every 25 characters (no id hides one)
            text = "\n".join(live)
            step = ID_LENGTH + 1
            if (
                len(text) != len(live) * step - 1
                or _ID_TEXT.fullmatch(text) is None
                or text.count("\n") != len(live) - 1
                or text[ID_LENGTH::step].strip("\n")
            ):
                return False
        named = set(live.values())
        named.discard(None)
        return not named.difference(live) and named.isdisjoint(self.mutable)

    def _row_problems(self) -> list[str]:
        """Each bad id and each parent that is no live immutable row, in row order."""
        found: list[str] = []
        valid = ID_PATTERN.fullmatch
        live, all_ids, mutable = self.parent_of, self.all_ids, self.mutable
        for rid, parent in live.items():
            if valid(rid) is None:
                found.append(f"record {rid!r}: not a valid id")
            if parent is None or (parent in live and parent not in mutable):
                continue
            if parent not in all_ids:
                found.append(f"record {rid}: its parent {parent!r} has no row")
            elif parent not in live:
                # prune removes children first: a live child of a tombstone is damage,
                # and finishing that removal would take the child's lower layer
                found.append(f"record {rid}: its parent {parent} is marked removed")
            else:
                found.append(f"record {rid}: its parent {parent} is a mutable record")
        return found

    def _cycles(self) -> list[str]:
        # walk[rid] = the start of the walk that first reached rid: meeting the current
        # walk again is a loop; meeting an earlier one is a chain already known to end
        walk: dict[str, str] = {}
        parent_of = self.parent_of
        found: list[str] = []
        for start in parent_of:
            current: str | None = start
            while current is not None:
                seen_by = walk.get(current)
                if seen_by is not None:
                    if seen_by == start:
                        found.append(f"record {start}: its parent chain loops at {current}")
                    break
                walk[current] = start
                current = parent_of.get(current)
        return found

    # -- rows against the disk ----------------------------------------------------------

    def layer_holder(self, rid: str) -> str | None:
        """The name under ``snapshots/`` holding the bytes of live record ``rid``."""
        own = self.pair_of.get(rid, rid)
        candidates = [own, rid] if own != rid else [rid]
        partner = self.immutable_of.get(rid)
        if partner is not None:
            candidates.append(partner)
        dirs = self.layer_dirs
        for name in candidates:
            if name in dirs:
                return name
        for name in candidates:
            if f"{TRASH_PREFIX}{name}" in dirs:
                return f"{TRASH_PREFIX}{name}"
        return None

    def named_layers(self) -> list[str]:
        """Live records that own a layer directory (an equal pair's is the mutable's)."""
        return [rid for rid in self.parent_of if rid not in self.pair_of]

    def missing(self) -> list[str]:
        """Live records (pair immutables included) whose bytes are nowhere on disk."""
        dirs, pair_of = self.layer_dirs, self.pair_of
        return [
            rid
            for rid in self.parent_of
            if pair_of.get(rid, rid) not in dirs and self.layer_holder(rid) is None
        ]

    def unmounted_message(self) -> str | None:
        """The refusal when the layers look unmounted rather than lost, else None."""
        # the records owning a layer directory (as ``named_layers``), counted with sets
        named = len(self.parent_of) - len(self.pair_of.keys() & self.parent_of.keys())
        if not named:
            return None
        unlisted = filterfalse(self.layer_dirs.__contains__, self.parent_of)  # C speed
        absent = [
            rid for rid in unlisted if rid not in self.pair_of and self.layer_holder(rid) is None
        ]
        if self.snapshots_exist and len(absent) * 2 <= named:
            return None
        where = str(self.directory)
        if not self.snapshots_exist:
            where += " (the directory does not exist)"
        return (
            f"{len(absent)} of {named} layers are missing under {where}: is the disk "
            "mounted? Nothing was changed. If the layers are really gone, "
            "`cachetui doctor --fix --forget-missing` forgets them after listing them"
        )

    def layer_entries(self) -> list[str]:
        """Names under ``snapshots/`` that look like layers (not staging or trash)."""
        return [
            name
            for name in self.names
            if ID_PATTERN.fullmatch(name) and not name.startswith((STAGING_PREFIX, TRASH_PREFIX))
        ]


def inspect(records: RecordStore, directory: Path) -> Inspection:
    """Read the record table's shape (inside the caller's transaction, or its own read)
    and list ``snapshots/``; the listing comes after the read, so a layer created since
    the read is at worst one more name, never a row without its directory."""
    if records.in_transaction():
        rows = records.shapes()
    else:
        with records.read():
            rows = records.shapes()
    return _inspection(rows, directory)


def inspect_state(state: StoreState, directory: Path) -> Inspection:
    """The same checks' input from a picture loaded with its tombstones (the open loads
    the whole picture inside its write, to hand it on to the first reader), then the
    listing of ``snapshots/``."""
    rows = state.rows
    parent_of = {rid: row.parent for rid, row in rows.items() if not row.deleted}
    pair_of = {
        rid: row.equal_mutable
        for rid, row in rows.items()
        if row.equal_mutable is not None and not row.deleted
    }
    if (
        set(map(type, rows)) - {str}
        or set(map(type, parent_of.values())) - {str, type(None)}
        or set(map(type, pair_of.values())) - {str}
    ):
        # Not text where ids belong (damage): read the rows as the narrow read does.
        shapes = [
            (row.id, row.parent, row.equal_mutable, row.mutable, row.deleted)
            for row in rows.values()
        ]
        seen = _inspection(shapes, directory)
        seen.odd_deleted.update(state.odd_deleted)
        return seen
    mutable = {rid for rid, row in rows.items() if row.mutable and not row.deleted}
    odd = state.odd_deleted
    for rid in odd:  # hidden from every live read: not live here either
        parent_of.pop(rid, None)
        pair_of.pop(rid, None)
        mutable.discard(rid)
    exists, names, dirs = list_snapshots(directory)
    return Inspection(
        directory,
        parent_of,
        pair_of,
        mutable,
        set(rows),
        exists,
        names,
        layer_dirs=dirs,
        odd_deleted=dict(odd),
    )


def _inspection(rows: list[tuple[Any, ...]], directory: Path) -> Inspection:
    parent_of: dict[str, str | None] = {}
    pair_of: dict[str, str] = {}
    mutable: set[str] = set()
    all_ids: set[str] = set()
    odd: dict[str, Any] = {}
    if not set(map(itemgetter(4), rows)) <= {0, 1}:  # C speed: normally only 0 and 1
        odd = {str(row[0]): row[4] for row in rows if row[4] not in (0, 1)}
        rows = [row for row in rows if str(row[0]) not in odd]  # neither live nor removing
        all_ids.update(odd)
    for rid, parent, equal_mutable, is_mutable, deleted in rows:
        rid = str(rid)
        all_ids.add(rid)
        if deleted:
            continue
        parent_of[rid] = None if parent is None else str(parent)
        if equal_mutable is not None:
            pair_of[rid] = str(equal_mutable)
        if is_mutable:
            mutable.add(rid)
    exists, names, dirs = list_snapshots(directory)
    return Inspection(
        directory,
        parent_of,
        pair_of,
        mutable,
        all_ids,
        exists,
        names,
        layer_dirs=dirs,
        odd_deleted=odd,
    )
