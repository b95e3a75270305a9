"""Formatting view rows into fixed-width columns (pure functions, no widgets)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import humanize
from rich.text import Text

from cachetui.core import CacheError, LockedError, NotFoundError, RecordState, is_valid_time
from cachetui.fleet_views import StoreRow
from cachetui.output import escape
from cachetui.units import format_bytes_buildx
from cachetui.views import state_words

__all__ = [
    "Columns",
    "ago",
    "clock_time",
    "describe_error",
    "escape",
    "format_row",
    "format_store_row",
    "header_text",
    "size",
    "timestamp",
]


def describe_error(err: BaseException) -> str:
    """One line saying why a store call failed, for a notification."""
    if isinstance(err, LockedError):
        return f"{err.id} is locked: another process holds it"
    if isinstance(err, NotFoundError):
        return f"not found: {err} (it may have been pruned meanwhile)"
    if isinstance(err, CacheError | OSError):
        return str(err) or type(err).__name__
    return f"{type(err).__name__}: {err}"


ICON = 2  # the expand icon (leaves get two spaces)

STATE_STYLES = {
    "in use": "bold dark_orange",
    "mutable": "cyan",
    "retained": "magenta",
    "pending": "italic dodger_blue2",
    "pinned": "bold green",
    "requested": "bold italic dodger_blue2",
    "missing": "bold red",
    "broken": "bold red",
}


def size(n: int) -> str:
    """Bytes as the command line shows them (``docker buildx du``'s ``57.75MB``): one
    format for the screen and the CLI, so a number can be compared across them."""
    return format_bytes_buildx(max(n, 0))


def records(n: int) -> str:
    """``1 record``, ``2 records``."""
    return f"{n} record{'s' if n != 1 else ''}"


def ago(epoch: float | None, now: float) -> str:
    if epoch is None:
        return "never"
    if not is_valid_time(epoch):
        return "unknown"  # a stored time that is not one (doctor reports it)
    return humanize.naturaltime(
        datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None),
        when=datetime.fromtimestamp(now, UTC).replace(tzinfo=None),
    )


def timestamp(epoch: float) -> str:
    if not is_valid_time(epoch):
        return "unknown"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Columns:
    """Column widths for one terminal width."""

    name: int = 14
    size: int = 10
    state: int = 24
    type: int = 12
    last: int = 15
    uses: int = 5
    show_type: bool = True
    guide: int = 4
    min_id: int = 12  # the id never gets narrower than this, however deep the row

    @classmethod
    def for_width(cls, width: int) -> Columns:
        if width >= 118:
            base = cls()
        elif width >= 96:
            base = cls(name=12, state=20, last=14, show_type=False, guide=3, min_id=10)
        else:
            base = cls(
                name=10, size=9, state=16, last=13, uses=4, show_type=False, guide=2, min_id=8
            )
        others = ICON + 2 + base.size + base.state + base.last + base.uses + 6
        if base.show_type:
            others += base.type + 1
        spare = width - others - 22  # leave room for the description
        name = min(max(base.name, spare), 27)
        return cls(
            name=name,
            size=base.size,
            state=base.state,
            type=base.type,
            last=base.last,
            uses=base.uses,
            show_type=base.show_type,
            guide=base.guide,
            min_id=base.min_id,
        )


def _cell(text: str, width: int, *, right: bool = False) -> str:
    if len(text) > width:
        text = text[: max(width - 1, 0)] + "…" if width > 1 else text[:width]
    return text.rjust(width) if right else text.ljust(width)


def header_text(columns: Columns, sort: str = "size") -> Text:
    """The column titles; the sorted column carries an arrow."""
    size_title = "▼ SIZE" if sort == "size" else "SIZE"
    last_title = "LAST USED ▼" if sort == "last used" else "LAST USED"
    desc_title = "DESCRIPTION ▲" if sort == "name" else "DESCRIPTION"
    parts = [
        " " * (ICON + 2),
        _cell("ID", columns.name),
        " ",
        _cell(size_title, columns.size, right=True),
        " ",
        _cell("STATE", columns.state),
        " ",
    ]
    if columns.show_type:
        parts += [_cell("TYPE", columns.type), " "]
    parts += [_cell(last_title, columns.last), " ", _cell("USES", columns.uses, right=True)]
    parts += ["  " + desc_title]
    return Text("".join(parts), style="bold")


def format_row(
    row: RecordState,
    *,
    depth: int,
    marked: bool,
    pinned: bool = False,
    now: float,
    columns: Columns,
    dim: bool = False,
    pending: str | None = None,
) -> Text:
    """One tree label: mark, id (narrower when deeper, so the columns line up: the tree
    sizes ``columns.name`` for its deepest line), size, state words, type, last use,
    usage count and description."""
    name_width = max(columns.name - columns.guide * depth, columns.min_id)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("✓ " if marked else "  ", style="bold green" if marked else "")
    # A fleet's keys are "HOST/ID": the host is the row above, the column shows the id.
    text.append(_cell(row.id.rpartition("/")[2] or row.id, name_width), style="dim" if dim else "")
    text.append(" ")
    text.append(_cell(size(row.size), columns.size, right=True), style="bold" if not dim else "")
    text.append(" ")
    states = state_words(row, pinned) + (("requested",) if pending else ())
    state_text = Text()
    for i, word in enumerate(states):
        if i:
            state_text.append(" ")
        state_text.append(word, style=STATE_STYLES.get(word, ""))
    if not states:
        state_text.append("free", style="dim")
    state_text.truncate(columns.state, overflow="ellipsis", pad=True)
    text.append_text(state_text)
    text.append(" ")
    if columns.show_type:
        text.append(_cell(row.record_type, columns.type), style="dim")
        text.append(" ")
    text.append(_cell(ago(row.last_used_at, now), columns.last))
    text.append(" ")
    text.append(_cell(str(row.usage_count), columns.uses, right=True))
    text.append("  ")
    text.append(escape(row.description) or "-", style="dim" if dim or not row.description else "")
    return text


def format_store_row(
    store: StoreRow, *, now: float, columns: Columns, stale: float | None = None, dim: bool = False
) -> Text:
    """A fleet's store row: name, total, online or offline, records, last GC, and the
    store's reclaimable bytes and free disk in the description column."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("  ")
    text.append(_cell(escape(store.name), columns.name), style="bold" if not dim else "dim")
    text.append(" ")
    text.append(_cell(size(store.total), columns.size, right=True), style="bold")
    text.append(" ")
    if stale is not None:
        state, style = "unknown (stale)", "dim"
    elif store.online:
        state, style = "online", "green"
    else:
        state, style = store.status, "bold red"
    text.append(_cell(state, columns.state), style=style)
    text.append(" ")
    if columns.show_type:
        free = f"{store.free_fraction:.0%} free" if store.disk_total else "host"
        text.append(
            _cell(free, columns.type), style="bold red" if store.free_fraction < 0.1 else ""
        )
        text.append(" ")
    gc = "no GC yet" if store.last_gc_at is None else f"GC {ago(store.last_gc_at, now)}"
    text.append(_cell(gc, columns.last))
    text.append(" ")
    text.append(_cell(str(store.records), columns.uses, right=True))
    text.append("  ")
    parts = [f"{size(store.reclaimable)} reclaimable"]
    if store.disk_total and not columns.show_type:
        parts.append(f"disk {store.free_fraction:.0%} free")
    text.append(" · ".join(parts), style="dim" if dim else "")
    return text


def clock_time(epoch: float) -> str:
    """``HH:MM:SS`` UTC (the fleet's times come from the server's clock)."""
    return time.strftime("%H:%M:%S", time.gmtime(epoch))
