"""Plain values shared across the core: record types, usage rows, prune options, mounts.

No I/O lives here; everything is a frozen dataclass or an enum.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, make_dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cachetui.core.errors import InvalidError
from cachetui.core.timestamps import UNKNOWN_TIME, is_valid, to_datetime

__all__ = [
    "HEALTH_STATES",
    "CacheMount",
    "GCResult",
    "GCRunInfo",
    "GCTotals",
    "Kept",
    "Mount",
    "PruneOptions",
    "RecordType",
    "Sharing",
    "TierResult",
    "UsageDraft",
    "UsageInfo",
    "check_labels",
    "to_seconds",
]

#: The values of ``UsageInfo.health``.
HEALTH_STATES = ("ok", "missing", "broken")


class RecordType(enum.StrEnum):
    """BuildKit's record types (``cache.recordType``)."""

    REGULAR = "regular"
    INTERNAL = "internal"
    FRONTEND = "frontend"
    SOURCE_LOCAL = "source.local"
    SOURCE_GIT_CHECKOUT = "source.git.checkout"
    EXEC_CACHEMOUNT = "exec.cachemount"

    @classmethod
    def parse(cls, value: object) -> RecordType:
        """Accept an enum member or its string value; anything else is ``InvalidError``."""
        if isinstance(value, cls):
            return value
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return cls(value)
        except ValueError:
            allowed = ", ".join(member.value for member in cls)
            raise InvalidError(
                f"invalid record type {value!r}: expected one of {allowed}"
            ) from None


class Sharing(enum.StrEnum):
    """How a cache mount's record is shared between builds (BuildKit's ``sharing=``).

    ``shared``: any number of holders at once; ``private``: one holder, and a second
    gets a new record of the same cache id; ``locked``: one holder, and a second waits
    for it (or is refused).
    """

    SHARED = "shared"
    PRIVATE = "private"
    LOCKED = "locked"

    @classmethod
    def parse(cls, value: object) -> Sharing:
        """Accept a member or its string value; anything else is ``InvalidError``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str) and value in cls._value2member_map_:
            return cls(value)
        allowed = ", ".join(member.value for member in cls)
        raise InvalidError(f"invalid sharing mode {value!r}: expected one of {allowed}")


#: Longest cache id, mount target, label key and label value accepted (bytes of text).
MAX_META_LENGTH = 4096
_LABEL_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


def _check_text(value: object, what: str, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidError(f"invalid {what} {value!r}: expected a string")
    if not empty and not value:
        raise InvalidError(f"invalid {what} {value!r}: must not be empty")
    if "\x00" in value or len(value) > MAX_META_LENGTH:
        raise InvalidError(
            f"invalid {what} {value[:80]!r}: no NUL and at most {MAX_META_LENGTH} characters"
        )
    return value


@dataclass(frozen=True, slots=True)
class CacheMount:
    """The identity of an ``exec.cachemount`` record: which ``--mount=type=cache`` it is.

    ``cache_id`` is the mount's ``id=`` (BuildKit defaults it to the target), ``target``
    the path it is mounted at in the build, ``sharing`` its mode. Three ``/root/.m2``
    mounts of three projects are told apart by their cache ids.
    """

    cache_id: str
    target: str = ""
    sharing: Sharing | str = Sharing.SHARED

    def __post_init__(self) -> None:
        _check_text(self.cache_id, "cache id", empty=False)
        _check_text(self.target, "cache mount target")
        object.__setattr__(self, "sharing", Sharing.parse(self.sharing))


def check_labels(labels: object, *, removals: bool = False) -> dict[str, str | None]:
    """Validate ``key=value`` labels: a mapping of keys to string values.

    Keys start with a letter or digit and hold letters, digits and ``. _ / -`` (so that
    ``label.<key>`` reads unambiguously in a filter). With ``removals``, a None value
    means "remove this label".
    """
    if not isinstance(labels, Mapping):
        raise InvalidError(f"invalid labels {labels!r}: expected a mapping of key to value")
    checked: dict[str, str | None] = {}
    for key, value in labels.items():
        _check_text(key, "label key", empty=False)
        if _LABEL_KEY_RE.fullmatch(key) is None:
            raise InvalidError(
                f"invalid label key {key!r}: start with a letter or digit and use only "
                "letters, digits and . _ / -"
            )
        if value is None and removals:
            checked[key] = None
            continue
        checked[key] = _check_text(value, f"value for label {key!r}")
    return checked


def check_new_metadata(
    kind: RecordType, labels: object, cache_mount: object
) -> tuple[dict[str, str | None], CacheMount | None]:
    """Validate ``new``'s ``labels`` and ``cache_mount`` arguments before any write."""
    checked = check_labels({} if labels is None else labels)
    if cache_mount is None:
        return checked, None
    if not isinstance(cache_mount, CacheMount):
        raise InvalidError(f"invalid cache_mount {cache_mount!r}: expected a CacheMount")
    if kind is not RecordType.EXEC_CACHEMOUNT:
        raise InvalidError(
            f"a cache mount identity needs record_type='exec.cachemount', not {kind.value!r}"
        )
    return checked, cache_mount


@dataclass(frozen=True, slots=True)
class Mount:
    """Where a ref's layers live: ``upper`` is writable (None when read-only), ``lowers``
    are read-only layers, nearest first."""

    upper: Path | None
    lowers: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class UsageInfo:
    """One row of disk usage (and of a prune report)."""

    id: str
    mutable: bool
    in_use: bool
    size: int
    parents: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    usage_count: int
    description: str
    record_type: str
    shared: bool
    #: ``key=value`` labels, sorted by key (a tuple of pairs: the row stays hashable).
    labels: tuple[tuple[str, str], ...] = ()
    #: The cache mount's identity, for ``exec.cachemount`` records created with one.
    cache_mount: CacheMount | None = None
    #: The sum of the files' lengths (``du --apparent-size``); -1 when not measured.
    apparent_size: int = -1
    #: "ok"; "missing" when the record's layer directory is gone (size 0, never
    #: mounted); "broken" when an ancestor's is.
    health: str = "ok"

    @property
    def label_map(self) -> dict[str, str]:
        """The labels as a dict."""
        return dict(self.labels)

    @property
    def reclaimable(self) -> bool:
        """BuildKit's RECLAIMABLE column: nobody uses it, directly or through a child."""
        return not self.in_use


class _LazyTime:
    """``UsageInfo.created_at``/``last_used_at``: the slot of a row disk usage built in
    bulk (``diskusage.build_usage``, from a ``UsageDraft``) holds epoch seconds until the
    first read makes (and keeps) the ``datetime``; rows built the ordinary way hold the
    ``datetime`` from the start.

    Disk usage builds 100,000 rows of which a screen reads a few dozen times: two
    ``datetime`` objects per row were a third of its cost. Readers, equality, hashing,
    ``repr`` and pickling all go through this descriptor, so they only ever see datetimes.
    """

    __slots__ = ("_slot",)

    def __init__(self, slot: Any) -> None:
        self._slot = slot

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self._slot.__get__(obj, owner)
        if value is None or isinstance(value, datetime):
            return value
        # A stored time that is not one (text, negative, past the year 9999) reads as
        # unknown: disk usage hands over the stored values unchecked.
        moment = to_datetime(value) if is_valid(value) else UNKNOWN_TIME
        self._slot.__set__(obj, moment)
        return moment

    def __set__(self, obj: object, value: Any) -> None:
        self._slot.__set__(obj, value)

    def __delete__(self, obj: object) -> None:
        self._slot.__delete__(obj)


for _name in ("created_at", "last_used_at"):
    setattr(UsageInfo, _name, _LazyTime(UsageInfo.__dict__[_name]))

#: A mutable twin of ``UsageInfo`` with the same slots in the same order: filling its
#: slots costs a plain attribute store each, where the frozen class's ``__init__`` pays
#: an ``object.__setattr__`` call per field. A filled draft then becomes a ``UsageInfo``
#: (``__class__`` assignment between classes of identical layout); its two times may be
#: epoch seconds, made datetimes on first read.
UsageDraft = make_dataclass(
    "UsageDraft", [(f.name, f.type) for f in fields(UsageInfo)], slots=True, eq=False
)


def to_seconds(value: float | int | timedelta, *, what: str) -> float:
    """A duration in seconds; a negative or non-numeric value is ``InvalidError``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidError(f"invalid {what} {value!r}: expected seconds or a timedelta")
    else:
        seconds = float(value)
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise InvalidError(f"invalid {what} {value!r}: must not be negative")
    return seconds


def _check_bytes(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidError(f"invalid {what} {value!r}: expected an integer number of bytes")
    if value < 0:
        raise InvalidError(f"invalid {what} {value!r}: must not be negative")


@dataclass(frozen=True, slots=True)
class PruneOptions:
    """One prune policy, as BuildKit's ``PruneInfo``."""

    all: bool = False
    filters: tuple[str, ...] = field(default=())
    keep_duration: float | timedelta = 0
    reserved_space: int = 0
    max_used_space: int = 0
    min_free_space: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.all, bool):  # "no" is truthy: never widen a prune by accident
            raise InvalidError(f"invalid all {self.all!r}: expected True or False")
        if isinstance(self.filters, str):
            object.__setattr__(self, "filters", (self.filters,))
        elif isinstance(self.filters, list | tuple):
            object.__setattr__(self, "filters", tuple(self.filters))
        else:
            raise InvalidError(
                f"invalid filters {self.filters!r}: expected a sequence of filter strings"
            )
        for text in self.filters:
            if not isinstance(text, str):
                raise InvalidError(f"invalid filter {text!r}: expected a string")
        to_seconds(self.keep_duration, what="keep_duration")
        _check_bytes(self.reserved_space, "reserved_space")
        _check_bytes(self.max_used_space, "max_used_space")
        _check_bytes(self.min_free_space, "min_free_space")

    @property
    def keep_seconds(self) -> float:
        """``keep_duration`` in seconds."""
        return to_seconds(self.keep_duration, what="keep_duration")

    @property
    def has_space_limit(self) -> bool:
        """True when any of the three space options is set (GC mode)."""
        return bool(self.reserved_space or self.max_used_space or self.min_free_space)


@dataclass(frozen=True, slots=True)
class Kept:
    """Why a record stays after a GC tier.

    ``kind`` is one of ``held`` (a live process holds it), ``type`` (internal or frontend
    without ``all``), ``shared`` (shared without ``all``), ``keep-duration`` (used, or
    created, within the keep duration), ``filter`` (not matched by the tier's filters),
    ``parent`` (a parent of records that stay), ``limit`` (the tier's space limit was
    met before its turn) or ``changed`` (another process used or held it during a real
    run). ``since`` is the use (or creation, Unix seconds) that keeps it, and ``by`` the
    record that use belongs to (itself, or for a parent the descendant used last).
    """

    kind: str
    text: str
    since: float | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True)
class TierResult:
    """One tier of a GC list: what it removed (or would), the totals, why the rest stays.

    ``total_before`` and ``total_after`` are the unshared bytes of the store around the
    tier (what the space limits count); ``limit`` is the tier's byte limit (None without
    space options); ``kept`` maps every record left after the tier to its reason.
    """

    index: int
    policy: PruneOptions
    removed: tuple[UsageInfo, ...]
    total_before: int
    total_after: int
    limit: int | None
    kept: dict[str, Kept] = field(default_factory=dict)

    @property
    def removed_bytes(self) -> int:
        return sum(info.size for info in self.removed)


@dataclass(frozen=True, slots=True)
class GCResult:
    """A whole GC list applied once (or planned, with ``dry_run``), tier by tier.

    ``interrupted`` is True when a stop request ended it between batches; the last tier
    then lists what it removed before stopping. ``refused`` is ``(id, reason)`` of each
    record a tier chose but kept because a filesystem is mounted in its layer (the run
    went on with the rest, as prune does).
    """

    tiers: tuple[TierResult, ...]
    dry_run: bool
    interrupted: bool = False
    refused: tuple[tuple[str, str], ...] = ()

    @property
    def removed(self) -> tuple[UsageInfo, ...]:
        return tuple(info for tier in self.tiers for info in tier.removed)

    @property
    def removed_bytes(self) -> int:
        return sum(tier.removed_bytes for tier in self.tiers)

    def fate(self, record_id: str) -> list[tuple[int, Kept | None]]:
        """For one record: each tier's verdict up to the one that takes it.

        A list of ``(tier index, reason)``: the reason it stays after that tier, or None
        for the tier that removes it (always the last entry then).
        """
        verdicts: list[tuple[int, Kept | None]] = []
        for tier in self.tiers:
            if any(info.id == record_id for info in tier.removed):
                verdicts.append((tier.index, None))
                break
            reason = tier.kept.get(record_id)
            if reason is not None:
                verdicts.append((tier.index, reason))
        return verdicts


@dataclass(frozen=True, slots=True)
class GCRunInfo:
    """One GC run as recorded in the store (``gc --history``, metrics).

    ``started_at`` is Unix seconds; ``policy`` names where the list came from;
    ``trigger`` is ``manual``, ``interval`` or ``low-space``.
    """

    started_at: float
    duration: float
    policy: str
    trigger: str
    tiers: int
    records: int
    bytes: int
    interrupted: bool = False
    pid: int = 0
    host: str = ""


@dataclass(frozen=True, slots=True)
class GCTotals:
    """Every GC run ever recorded in the store, summed (metrics' counters): the history
    keeps only the newest runs, and what it drops is added here first, so the totals
    never go down. ``last_started_at`` is 0.0 when no run was recorded."""

    runs: int = 0
    records: int = 0
    bytes: int = 0
    duration: float = 0.0
    last_started_at: float = 0.0
