"""The header line, the totals bar, the details pane, the filter bar and the footer."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from cachetui.core import RecordState, Totals
from cachetui.fleet_views import StoreRow
from cachetui.views import DetailsView, state_words
from cachetui.widgets.format import ago, escape, size, timestamp

__all__ = [
    "DashboardFooter",
    "DetailsPane",
    "FilterBar",
    "HeaderBar",
    "TotalsBar",
    "apparent_note",
    "details_text",
    "effective_text",
    "header_line",
    "store_details_text",
    "totals_text",
]


def header_line(root: str, *, read_only: str | None, live: str, width: int = 0) -> Text:
    """Live, paused or stopped (with the reason), read-only or not, and which store.

    The path comes last and loses its start, not its end, when the line is short.
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    if live == "live":
        text.append("● live", style="bold green")
    elif live == "paused":
        text.append("❚❚ paused", style="bold yellow")
        text.append(" (P resumes)", style="yellow")
    else:
        text.append(f"✕ {live}", style="bold red")
    if read_only is not None:
        text.append("  ")
        text.append(" READ-ONLY ", style="bold black on yellow")
        text.append(f" {read_only}", style="yellow")
    text.append("  store ", style="dim")
    room = width - text.cell_len if width else len(root)
    if len(root) > room >= 8:
        root = "…" + root[len(root) - room + 1 :]
    text.append(root, style="bold")
    return text


class HeaderBar(Static):
    """One line: the store's path, the read-only badge and the live state."""


def totals_text(totals: Totals, *, live: str, sort: str, marks: int, marked_bytes: int) -> Text:
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
    line("Kind", f"{kind} · {r.record_type} · {size(r.size)}{apparent_note(r)}")
    line("State", ", ".join(state_words(r, d.pinned)) or "free (reclaimable)")
    if r.health == "missing":
        line("Health", Text(f"missing: {r.layer_path} is gone", style="bold red"))
    elif r.health == "broken":
        line("Health", Text("broken: a parent's layer is gone", style="bold red"))
    if d.holders:
        for i, h in enumerate(d.holders):
            who = "this dashboard" if h.id in d.mine else f"pid {h.pid} on {h.host}"
            status = "running" if h.alive else "exited: does not count"
            line(
                "Held by" if i == 0 else "",
                Text(f"{who} since {ago(h.since, now)} ({status})", style="dark_orange"),
            )
    elif d.in_use_because:
        line("In use", Text(f"descendant {d.in_use_because} is held", style="dark_orange"))
    else:
        line("In use", "no")
    if d.prune_refused and r.has_children and not r.in_use:
        # Alone it cannot go; with everything below it, it can (x marks the chain).
        line("Prune", Text(f"refused alone: {d.prune_refused}", style="red"))
        line("", Text("x marks it with its whole chain (see Subtree)", style="dim"))
    elif d.prune_refused:
        line("Prune", Text(f"refused: {d.prune_refused}", style="red"))
    else:
        line("Prune", Text(f"would free {size(d.prune_frees)}", style="green"))
    if d.subtree_count > 1:
        line("Subtree", f"{d.subtree_count} records, {size(d.subtree_size)}")
    if r.description:
        line("Desc", escape(r.description))
    if r.labels:
        line("Labels", escape(", ".join(f"{k}={v}" for k, v in r.labels)))
    if r.cache_mount is not None:
        m = r.cache_mount
        target = f" · target {m.target}" if m.target else ""
        line("Cache", escape(f"id {m.cache_id}{target} · sharing {m.sharing}"))
    if d.chain:
        chain = " → ".join(f"{cid} ({size(csize)})" for cid, _desc, csize in d.chain[:4])
        more = f" → … {len(d.chain) - 4} more" if len(d.chain) > 4 else ""
        line("Parents", chain + more)
    else:
        line("Parents", "none (a base layer)")
    line("Created", f"{timestamp(r.created_at)} ({ago(r.created_at, now)})")
    times = "time" if r.usage_count == 1 else "times"
    line("Used", f"{r.usage_count} {times}, last {ago(r.last_used_at, now)}")
    effective = effective_text(d, now)
    if effective is not None:
        line("Eff. age", effective)
    if d.upper:
        line("Upper", d.upper)
    for i, lower in enumerate(d.lowers[:3]):
        line("Lowers" if i == 0 else "", lower)
    if len(d.lowers) > 3:
        line("", f"… and {len(d.lowers) - 3} more")
    text.rstrip()
    return text


def apparent_note(r: RecordState) -> str:
    """`` · apparent 64MB`` where the files' lengths read differently from the disk
    usage (sparse or small files, as ncdu and gdu show); else nothing."""
    if r.apparent_size < 0 or size(r.apparent_size) == size(r.size):
        return ""
    return f" · apparent {size(r.apparent_size)}"


def effective_text(d: DetailsView, now: float) -> Text | None:
    """The effective age when it comes from below: the newest use in the subtree, whose
    it is, and that it keeps this record (None when the record's own use is the newest)."""
    below = d.effective
    r = d.record
    if below is None or r.effective_at is None:
        return None
    verb = "used" if below.usage_count else "created (never used)"
    text = Text()
    text.append(ago(r.effective_at, now), style="bold")
    text.append(f": {below.id} below it was {verb} then; a parent stays while it does")
    return text


def store_details_text(s: StoreRow, now: float) -> Text:
    """A fleet's store row: where it runs, whether it answers, its disk and last GC."""
    text = Text()

    def line(label: str, value: str | Text, style: str = "") -> None:
        text.append(f"{label:<11}", style="bold")
        if isinstance(value, Text):
            text.append_text(value)
        else:
            text.append(value, style=style)
        text.append("\n")

    line("Store", s.name)
    line("Host", f"{s.host or '?'} · {s.root} · agent {s.agent_version or '?'}")
    if s.online:
        line("Status", Text("online", style="green"))
    else:
        line("Status", Text(f"{s.status}: actions refused", style="bold red"))
        line("", "its records are shown as of its last heartbeat")
    line("Records", f"{s.records}, {size(s.total)}: {size(s.reclaimable)} reclaimable")
    if s.disk_total:
        line("Disk", f"{size(s.disk_free)} free of {size(s.disk_total)} ({s.free_fraction:.0%})")
    if s.last_gc_at is None:
        line("Last GC", "none yet")
    else:
        freed = f", freed {size(s.last_gc_freed or 0)} ({s.last_gc_records or 0} records)"
        line("Last GC", f"{timestamp(s.last_gc_at)} ({ago(s.last_gc_at, now)}){freed}")
    if s.last_error:
        line("Error", Text(s.last_error, style="red"))
    line("Keys", "→ opens its records; actions on them are sent to its agent")
    text.rstrip()
    return text


class DetailsPane(Static):
    """The selected record: id, parents, mounts, holders and what a prune frees."""


class FilterBar(Vertical):
    """``/``: plain words (searched in ids and descriptions) or a containerd filter,
    validated as you type, with a caret under the error. The core's ``is_expression``
    tells them apart: an operator (``= ! ~``), a comma or a filter key makes a filter."""

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="search words, or a filter: type==regular,mutable  (esc closes)",
            id="filter",
        )
        yield Static("", id="filter-error")

    def show_count(self, matched: int, total: int, *, search: bool = False) -> None:
        """``search: N of M records match`` (in red when none does)."""
        error = self.query_one("#filter-error", Static)
        self.remove_class("-error")
        style = "bold red" if matched == 0 else "bold green"
        word = "record matches" if total == 1 else "records match"
        text = Text("  ")
        text.append("search" if search else "filter", style="bold cyan")
        text.append(f": {matched} of {total} {word}", style=style)
        if search:
            text.append("  (id or description holds every word)", style="dim")
        error.update(text)

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


class DashboardFooter(Footer):
    """Textual's footer, also listing the keys while the app has no focus.

    Textual's footer ignores binding changes while the app is blurred. In a browser
    (``cachetui serve``) the page may report a blur before the screen is first drawn, and
    the footer then stayed empty until the page was clicked.
    """

    def bindings_changed(self, screen: Screen[object]) -> None:
        self._bindings_ready = True
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self.recompose)
