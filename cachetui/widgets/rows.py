"""One tree line as text: a record's row, or a fleet's store row, in a ``Layout``."""

from __future__ import annotations

from rich.text import Text

from cachetui.core import RecordState
from cachetui.fleet_views import StoreRow
from cachetui.views import StoreView
from cachetui.widgets.columns import BAR_MIN, DESC_GAP, Layout, RowContext, cell, percent, share_bar
from cachetui.widgets.format import ago, escape, size

__all__ = ["format_row", "format_store_row"]


def _fit(text: Text, width: int, right: bool) -> Text:
    """A cell's text cut with an ellipsis or padded to exactly ``width`` cells."""
    if text.cell_len > width:
        text.truncate(width, overflow="ellipsis")
    elif right:
        text = Text(" " * (width - text.cell_len)) + text
    else:
        text.pad_right(width - text.cell_len)
    return text


def format_row(
    row: RecordState,
    *,
    view: StoreView,
    depth: int,
    marked: bool,
    now: float,
    layout: Layout,
    pinned: bool = False,
    dim: bool = False,
    pending: str | None = None,
) -> Text:
    """One tree label: the mark, the id (narrower when deeper, so the columns line up),
    the layout's columns and the description."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("✓ " if marked else "  ", style="bold green" if marked else "")
    # A fleet's keys are "HOST/ID": the host is the row above, the column shows the id.
    shown_id = row.id.rpartition("/")[2] or row.id
    text.append(cell(shown_id, layout.id_width(depth)), style="dim" if dim else "")
    ctx = RowContext(row, view, now, pinned=pinned, pending=pending, dim=dim)
    for spec, width in layout.columns:
        text.append(" ")
        text.append_text(_fit(spec.render(ctx, width), width, spec.right))
    text.append(" " * DESC_GAP)
    text.append(escape(row.description) or "-", style="dim" if dim or not row.description else "")
    return text


def format_store_row(
    store: StoreRow,
    *,
    now: float,
    layout: Layout,
    fleet_total: int = 0,
    stale: float | None = None,
    dim: bool = False,
) -> Text:
    """A fleet's store row: name, total (and its share of the fleet), online or offline,
    free disk, last GC, records, and the reclaimable bytes in the description column."""
    if stale is not None:
        state, state_style = "unknown (stale)", "dim"
    elif store.online:
        state, state_style = "online", "green"
    else:
        state, state_style = store.status, "bold red"
    share = store.total / fleet_total if fleet_total > 0 else 0.0
    cells: dict[str, tuple[str, str]] = {
        "size": (size(store.total), "bold"),
        "subtree": (size(store.total), "bold"),
        "items": (str(store.records), ""),
        "state": (state, state_style),
        "type": (
            f"{store.free_fraction:.0%} free" if store.disk_total else "host",
            "bold red" if store.free_fraction < 0.1 else "",
        ),
        "last": (
            "no GC yet" if store.last_gc_at is None else f"GC {ago(store.last_gc_at, now)}",
            "",
        ),
        # the records count goes under ITEMS when that column is shown
        "uses": ("" if layout.has("items") else str(store.records), ""),
    }
    last_gc = "no GC yet" if store.last_gc_at is None else f"GC {ago(store.last_gc_at, now)}"
    cells["last"] = (last_gc, "")
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("  ")
    text.append(cell(escape(store.name), layout.name), style="bold" if not dim else "dim")
    for spec, width in layout.columns:
        text.append(" ")
        if spec.key == "share":
            value = Text(percent(share).rjust(min(width, 6)))
            if width >= BAR_MIN:
                value = Text(share_bar(share, width - 7) + " ", style="cyan") + value
        else:
            plain, style = cells.get(spec.key, ("", ""))
            value = Text(plain, style=style)
        text.append_text(_fit(value, width, spec.right))
    text.append(" " * DESC_GAP)
    parts = [f"{size(store.reclaimable)} reclaimable"]
    if store.disk_total and not layout.has("type"):
        parts.append(f"disk {store.free_fraction:.0%} free")
    text.append(" · ".join(parts), style="dim" if dim else "")
    return text
