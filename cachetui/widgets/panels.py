"""The totals bar, the details pane and the filter bar."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Static

from cachetui.service import DetailsView, TotalsView
from cachetui.widgets.format import ago, escape, size, timestamp

__all__ = ["DetailsPane", "FilterBar", "TotalsBar", "details_text", "totals_text"]


def totals_text(totals: TotalsView, *, live: str, sort: str, marks: int, marked_bytes: int) -> Text:
    text = Text()

    def item(label: str, value: str, style: str = "bold") -> None:
        if text.plain:
            text.append("  ")
        text.append(f"{label} ", style="dim")
        text.append(value, style=style)

    item("Total", size(totals.total))
    item("Reclaimable", size(totals.reclaimable), "bold green")
    item("In use", size(totals.in_use), "bold dark_orange")
    item("Shared", size(totals.shared))
    if totals.disk_total:
        item("Disk free", f"{size(totals.disk_free)} of {size(totals.disk_total)}")
    item("Records", str(totals.records))
    item("Sort", sort)
    item("Live", live, "bold" if live == "on" else "bold red")
    if marks:
        item("Marked", f"{marks} ({size(marked_bytes)})", "bold green")
    return text


class TotalsBar(Static):
    """One line: total, reclaimable, in use, shared, disk free, sort and live state."""


def details_text(d: DetailsView, now: float) -> Text:
    r = d.record
    text = Text()

    def line(label: str, value: str | Text, style: str = "") -> None:
        text.append(f"{label:<11}", style="bold")
        if isinstance(value, Text):
            text.append_text(value)
        else:
            text.append(value, style=style)
        text.append("\n")

    line("ID", r.id)
    kind = "mutable" if r.mutable else "immutable"
    line("Kind", f"{kind} · {r.record_type} · {size(r.size)}")
    line("State", ", ".join(r.states) or "free (reclaimable)")
    if d.holders:
        for i, h in enumerate(d.holders):
            who = "this dashboard" if h.mine else f"pid {h.pid} on {h.host}"
            status = "running" if h.alive else "exited: does not count"
            line(
                "Held by" if i == 0 else "",
                Text(f"{who} since {ago(h.since, now)} ({status})", style="dark_orange"),
            )
    elif d.in_use_because:
        line("In use", Text(f"descendant {d.in_use_because} is held", style="dark_orange"))
    else:
        line("In use", "no")
    if d.prune_refused:
        line("Prune", Text(f"refused: {d.prune_refused}", style="red"))
    else:
        line("Prune", Text(f"would free {size(d.prune_frees)}", style="green"))
    if d.subtree_count > 1:
        line("Subtree", f"{d.subtree_count} records, {size(d.subtree_size)}")
    if r.description:
        line("Desc", escape(r.description))
    if d.chain:
        chain = " → ".join(f"{cid} ({size(csize)})" for cid, _desc, csize in d.chain[:4])
        more = f" → … {len(d.chain) - 4} more" if len(d.chain) > 4 else ""
        line("Parents", chain + more)
    else:
        line("Parents", "none (a base layer)")
    line("Created", f"{timestamp(r.created_at)} ({ago(r.created_at, now)})")
    times = "time" if r.usage_count == 1 else "times"
    line("Used", f"{r.usage_count} {times}, last {ago(r.last_used_at, now)}")
    if d.upper:
        line("Upper", d.upper)
    for i, lower in enumerate(d.lowers[:3]):
        line("Lowers" if i == 0 else "", lower)
    if len(d.lowers) > 3:
        line("", f"… and {len(d.lowers) - 3} more")
    text.rstrip()
    return text


class DetailsPane(Static):
    """The selected record: id, parents, mounts, holders and what a prune frees."""


class FilterBar(Vertical):
    """``/``: a containerd filter, validated as you type, with a caret under the error."""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter, e.g. type==regular,mutable  (esc closes)", id="filter")
        yield Static("", id="filter-error")

    def show_error(self, text: str, position: int | None, message: str = "") -> None:
        error = self.query_one("#filter-error", Static)
        if position is None:
            error.update("")
            self.remove_class("-error")
            return
        # the Input draws one cell of padding and its border before the text
        caret = Text(" " * (position + 2) + "^ ", style="bold red")
        caret.append(message, style="red")
        error.update(caret)
        self.add_class("-error")
