"""The dashboard's main screen: the header, totals, the ref tree, the filter bar, the
details pane and the footer, and the keys that work on them.

What it shows comes in as messages: ``StoreLoaded`` once, then ``ViewRefreshed`` from
``LiveUpdates`` for every change (with the details under the cursor and the filter
re-matched), ``DetailsRead`` when the cursor moves and ``FilterMatched`` (the matches and
what they show) when the filter changes; every store read and every match runs in a
worker, never on the UI thread. The write flows are
``ActionFlows``'; this screen only refuses them in read-only mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Input, Static

from cachetui.core import CacheError, FilterSyntaxError, is_expression
from cachetui.fleet_views import FleetView
from cachetui.messages import (
    DetailsRead,
    FeedStatus,
    FilterMatched,
    FilterRejected,
    LoadFailed,
    Notice,
    RecordsRead,
    StoreLoaded,
    ViewRefreshed,
)
from cachetui.screens.actions import ActionFlows
from cachetui.screens.help import HelpScreen
from cachetui.screens.live import LiveUpdates
from cachetui.service import CacheService
from cachetui.views import Delta, DetailsView, StoreView
from cachetui.widgets.format import describe_error, escape
from cachetui.widgets.panels import (
    DashboardFooter,
    DetailsPane,
    FilterBar,
    HeaderBar,
    TotalsBar,
    details_text,
    header_line,
    store_details_text,
    totals_text,
)
from cachetui.widgets.ref_tree import RefTree, shown_for
from cachetui.widgets.sorting import SORTS

if TYPE_CHECKING:
    from concurrent.futures import Future

    from cachetui.fleet_service import FleetService

__all__ = ["WRITE_ACTIONS", "MainScreen"]

#: Write keys and what they do (in read-only mode each says why it is off).
WRITE_KEYS = {
    "space": "mark",
    "x": "mark a whole chain",
    "L": "label",
    "d": "prune",
    "p": "prune by policy",
    "c": "commit",
    "h": "hold",
    "u": "release",
}

#: Actions that change the store: hidden and refused in read-only mode.
WRITE_ACTIONS = frozenset(
    {"toggle_mark", "mark_chain", "labels", "prune", "prune_policy", "commit", "hold", "release"}
)

#: Keys of the main screen that are off (and not listed in its footer) under a dialog.
MAIN_ACTIONS = WRITE_ACTIONS | {
    "refuse_read_only",
    "filter",
    "sort_by",
    "pause",
    "resume",
    "toggle_details",
    "reload",
    "clear_filter",
    "help",
}


class MainScreen(Screen[None]):
    """The records of one store (or a fleet), live."""

    # The footer lists these in this order, after the tree's own (space: mark).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("d", "prune", "Prune"),
        Binding("x", "mark_chain", "Mark chain", show=False),
        Binding("L", "labels", "Label", key_display="L", show=False),
        Binding("p", "prune_policy", "Policy"),
        Binding("g", "gc_preview", "GC list", show=False),
        Binding("c", "commit", "Commit"),
        Binding("h", "hold", "Hold"),
        Binding("u", "release", "Release"),
        Binding("slash", "filter", "Filter", key_display="/"),
        *(
            # ncdu's and gdu's keys; the same key again reverses the order
            Binding(spec.key, f"sort_by('{spec.kind}')", "Sort", show=spec.key == "s")
            for spec in SORTS
        ),
        Binding("P", "pause", "Pause", key_display="P"),
        Binding("P", "resume", "Resume", key_display="P"),
        Binding("i", "toggle_details", "Details", show=False),
        Binding("r", "reload", "Reload", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        *(
            Binding(key, f"refuse_read_only('{what}')", show=False)
            for key, what in WRITE_KEYS.items()
        ),
    ]

    def __init__(
        self,
        service: CacheService | FleetService,
        *,
        place: str,
        read_only: bool,
        live: bool,
        preload: Future[StoreView] | None = None,
    ) -> None:
        super().__init__(id="main")
        self.service = service
        self.place = place  # what the header names: a store's directory, a fleet's URL
        self.read_only = read_only
        self.live = live
        self.preload = preload
        self.loaded = False
        self.load_error: str | None = None
        self.damage: str | None = None  # damaged metadata: every row shown may be partial
        self.paused = False
        self.feed_error: str | None = None  # why live updates stopped (None: running)
        self.refreshes = 0  # changes folded into the screen (tests wait on it)
        self.filter_text = ""
        self.details: DetailsView | None = None
        self._details_for: str | None = None
        self.ref_tree = RefTree(service.now, id="tree")
        self.updates = LiveUpdates(service, self.ref_tree)
        self.flows = ActionFlows(service, self.ref_tree, self.updates)

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield TotalsBar("Loading…", id="totals")
        yield Static(id="columns")
        yield self.ref_tree
        yield FilterBar(id="filter-bar")
        yield DetailsPane("", id="details")
        yield DashboardFooter()
        yield self.updates
        yield self.flows

    def on_mount(self) -> None:
        self.query_one(FilterBar).display = False
        self.app.sub_title = self.place + ("  [read-only]" if self.read_only else "")
        if hasattr(self.service, "on_notice"):  # a fleet: progress from the agents
            self.service.on_notice = lambda text, severity="information": self.post_message(
                Notice(text, severity)
            )
        self._update_header()
        self.ref_tree.focus()
        self._load()

    def on_resize(self) -> None:
        self.call_after_refresh(self._update_header)

    def on_ref_tree_columns_changed(self) -> None:
        self._update_header()

    def _live_state(self) -> str:
        if not self.live:
            return "live updates off"
        if self.feed_error is not None:
            return f"live updates stopped: {self.feed_error} (retrying)"
        return "paused" if self.paused else "live"

    def _update_header(self) -> None:
        self.read_only = self.service.read_only
        reason = self.service.read_only_reason if self.read_only else None
        header = self.query_one(HeaderBar)
        width = max(header.size.width - 2, 0)  # its padding
        header.update(
            header_line(escape(self.place), read_only=reason, live=self._live_state(), width=width)
        )
        self.query_one("#columns", Static).update(self.ref_tree.columns.header(self.ref_tree.sort))

    def _update_totals(self) -> None:
        view = self.service.view
        if view is None:
            return
        marks = self.ref_tree.marks
        marked_bytes = sum(view.rows[m].size for m in marks if m in view.rows)
        text = totals_text(
            view.totals,
            live=self._live_state(),
            sort=self.ref_tree.sort.label,
            marks=len(marks),
            marked_bytes=marked_bytes,
        )
        if self.damage is not None:
            text = Text.assemble(("METADATA DAMAGED (read-only, partial)", "bold red"), "  ", text)
        self.query_one(TotalsBar).update(text)

    def on_ref_tree_marks_changed(self) -> None:
        self._update_totals()

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, severity=message.severity)  # type: ignore[arg-type]

    # -- loading ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load(self) -> None:
        try:
            preload, self.preload = self.preload, None
            view = preload.result() if preload is not None else self.service.load()
            # A fleet reads no local metadata: only a local store can be damaged.
            damage = self.service.damage() if isinstance(self.service, CacheService) else None
        except Exception as err:  # nothing crashes the app: show why it cannot open
            self.post_message(LoadFailed(describe_error(err)))
            return
        self.post_message(StoreLoaded(view, damage))

    def on_load_failed(self, message: LoadFailed) -> None:
        self.load_error = message.reason
        self.query_one(TotalsBar).update(f"Cannot open {self.place}: {message.reason}")
        self.notify(message.reason, title="cannot open the store", severity="error", timeout=30)

    def on_store_loaded(self, message: StoreLoaded) -> None:
        damage = message.damage
        if damage is not None:
            # An emptied metadata.db lists nothing while every layer is still on disk:
            # the screen must not look like an empty store.
            self.damage = damage
            self.read_only = True  # every write would be refused: hide the keys for them
            self.refresh_bindings()
            self.notify(
                f"{damage}: only the records that could be read are shown, and nothing "
                "can be changed; `cachetui doctor --rebuild` repairs it",
                title="metadata damaged",
                severity="error",
                timeout=60,
            )
        tree = self.ref_tree
        tree.show(message.view)
        if tree.cursor_node is None and tree.nodes:
            tree.cursor_line = 0
        self.loaded = True
        if self.service.read_only and not self.read_only:
            # The store could not be opened for writing: say so, as ``du`` does.
            self.read_only = True
            self.refresh_bindings()
            self.notify(
                f"opened read-only: {self.service.read_only_reason}",
                title="read-only",
                severity="warning",
                timeout=10,
            )
        self._update_header()
        self._update_totals()
        self._request_details()
        self.updates.start()
        if self.live:
            try:
                self.service.start_watching(self.updates.changed, self._feed_status)
            except CacheError as err:
                self.notify(describe_error(err), title="live updates off", severity="warning")

    # -- live updates -------------------------------------------------------------------------

    def _feed_status(self, reason: str | None) -> None:  # the change feed's threads
        self.post_message(FeedStatus(reason))

    def on_feed_status(self, message: FeedStatus) -> None:
        self.feed_error = message.reason
        self._update_header()
        if message.reason is not None:
            self.notify(
                f"live updates stopped: {message.reason} (retrying)",
                severity="error",
                timeout=10,
            )
        else:
            self.notify("live updates running again")
            self.updates.reload()  # catch up with what happened meanwhile

    def on_view_refreshed(self, message: ViewRefreshed) -> None:
        delta = message.delta
        if delta:
            self.ref_tree.apply_delta(delta, message.matches, message.shown)
            if message.select is not None and message.select in delta.view.rows:
                self.ref_tree.select_id(message.select)
            self._update_totals()
            self._update_filter_count()
            details = message.details
            cursor = self.ref_tree.cursor_id
            if details is not None and details.record.id == cursor:
                self._details_for = cursor
                self._show_details(details)
            else:  # the cursor moved meanwhile (or its record went away)
                self._request_details(force=True)
        self.refreshes += 1

    def reload(self, *, own: bool = True) -> None:
        """Re-read the store; ``own``: after our own action, shown even while paused."""
        self.updates.reload(own=own)

    def on_ref_tree_records_wanted(self, message: RefTree.RecordsWanted) -> None:
        self._read_store(message.key)

    @work(thread=True, group="expand", exit_on_error=False)
    def _read_store(self, key: str) -> None:
        """A fleet's store row was opened: read its records (off the UI thread)."""
        expand = getattr(self.service, "expand", None)
        if expand is None:
            return
        try:
            delta: Delta = expand(key)
        except Exception as err:
            self.post_message(Notice(describe_error(err), "error"))
            return
        self.post_message(RecordsRead(key, delta))

    def on_records_read(self, message: RecordsRead) -> None:
        self.ref_tree.records_loaded(message.delta.view, message.key)
        self._update_totals()
        self._request_details(force=True)

    def on_ref_tree_vanished(self, message: RefTree.Vanished) -> None:
        if message.cursor is not None:
            self.notify(
                f"{message.cursor[:12]} was removed (by another process); "
                "the cursor moved to its parent",
                severity="warning",
            )
        if message.marks:
            names = ", ".join(m[:12] for m in message.marks)
            n = len(message.marks)
            self.notify(
                f"dropped {n} mark{'s' if n != 1 else ''}: {names} "
                f"{'was' if n == 1 else 'were'} removed (by another process)",
                severity="warning",
            )

    # -- details ------------------------------------------------------------------------------

    def on_tree_node_highlighted(self, event: RefTree.NodeHighlighted[str]) -> None:
        self._request_details()

    def _request_details(self, force: bool = False) -> None:
        record_id = self.ref_tree.cursor_id
        if record_id is None:
            self.details = None
            self._details_for = None
            self.query_one(DetailsPane).update("No record selected." if self.loaded else "")
            return
        if record_id == self._details_for and not force:
            return
        self._details_for = record_id
        self._load_details(record_id)

    @work(thread=True, exclusive=True, group="details", exit_on_error=False)
    def _load_details(self, record_id: str) -> None:
        try:
            details = self.service.details(record_id)
        except Exception:
            return
        self.post_message(DetailsRead(details))

    def on_details_read(self, message: DetailsRead) -> None:
        if message.details.record.id == self.ref_tree.cursor_id:
            self._show_details(message.details)

    def _show_details(self, details: DetailsView) -> None:
        self.details = details
        view = self.service.view
        if isinstance(view, FleetView) and details.record.id in view.stores:
            text = store_details_text(view.stores[details.record.id], self.service.now())
            self.query_one(DetailsPane).update(text)
            return
        self.query_one(DetailsPane).update(details_text(details, self.service.now()))

    # -- the filter ---------------------------------------------------------------------------

    def action_filter(self) -> None:
        bar = self.query_one(FilterBar)
        bar.display = True
        bar.query_one(Input).focus()

    def action_clear_filter(self) -> None:
        bar = self.query_one(FilterBar)
        if not bar.display and not self.filter_text:
            return
        bar.query_one(Input).value = ""
        bar.show_error("", None)
        bar.display = False
        self._set_filter_text("")
        self.ref_tree.set_filter(None)
        self.ref_tree.focus()

    def _set_filter_text(self, text: str) -> None:
        self.filter_text = text
        self.updates.filter_text = text

    def _filter_input(self) -> str:
        return self.query_one(FilterBar).query_one(Input).value

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        text = event.value
        if not text.strip():
            self.query_one(FilterBar).show_error(text, None)
            self._apply_filter("", None)
            return
        self._match(text)

    @work(thread=True, exclusive=True, group="filter", exit_on_error=False)
    def _match(self, text: str) -> None:
        """Parse and match off the UI thread (100,000 records take a while)."""
        try:
            matches = self.service.matching(text)
        except FilterSyntaxError as err:
            self.post_message(FilterRejected(text, err.position, str(err).split(": ", 1)[-1]))
            return
        view = self.service.view
        shown = shown_for(matches, view) if view is not None else matches
        self.post_message(FilterMatched(text, matches, shown))

    def on_filter_rejected(self, message: FilterRejected) -> None:
        if message.text == self._filter_input():  # else a newer text is being matched
            self.query_one(FilterBar).show_error(message.text, message.position, message.reason)

    def on_filter_matched(self, message: FilterMatched) -> None:
        if message.text == self._filter_input():  # else a newer text is being matched
            self._apply_filter(message.text, message.matches, message.shown)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
        try:
            self.service.check_filter(event.value)
        except FilterSyntaxError:
            return
        self.ref_tree.focus()

    def _apply_filter(
        self,
        text: str,
        matches: frozenset[str] | None,
        shown: frozenset[str] | None = None,
    ) -> None:
        """Show what ``text`` matches (every match revealed, ancestors as context)."""
        self._set_filter_text(text.strip())
        if not self.filter_text or matches is None:
            self._set_filter_text("")
            self.ref_tree.set_filter(None)
            self._update_filter_count()
            return
        self.ref_tree.set_filter(matches, shown)
        self._update_filter_count()
        self._request_details()

    def _update_filter_count(self) -> None:
        bar = self.query_one(FilterBar)
        view = self.service.view
        matches = self.ref_tree.matches
        if not self.filter_text or matches is None or view is None:
            if not bar.has_class("-error"):
                bar.query_one("#filter-error", Static).update("")
            return
        bar.show_count(len(matches), len(view.rows), search=not is_expression(self.filter_text))

    # -- which keys work now ------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in MAIN_ACTIONS and self.app.screen is not self:
            return False  # a dialog is open: its footer, not ours, lists what works
        if action == "refuse_read_only":
            return self.read_only
        if self.read_only and action in WRITE_ACTIONS:
            return False  # hidden; the key falls through to refuse_read_only, which says why
        if action == "pause" and self.paused:
            return False
        return not (action == "resume" and not self.paused)

    def action_refuse_read_only(self, what: str) -> None:
        reason = self.service.read_only_reason or "--read-only"
        self.notify(f"read-only ({reason}): {what} is off", severity="warning")

    def _refuse_read_only(self) -> bool:
        if self.read_only:
            self.action_refuse_read_only("this action")
            return True
        return False

    # -- actions: view ------------------------------------------------------------------------

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(read_only=self.read_only))

    def action_sort_by(self, kind: str) -> None:
        self.ref_tree.action_sort_by(kind)

    def on_ref_tree_sort_changed(self) -> None:
        self._update_totals()
        self._update_header()

    def action_pause(self) -> None:
        self._set_paused(True)

    def action_resume(self) -> None:
        self._set_paused(False)

    def action_toggle_live(self) -> None:
        self._set_paused(not self.paused)

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.notify("live updates paused" if paused else "live updates resumed")
        self.refresh_bindings()
        self._update_header()
        self._update_totals()
        self.updates.set_paused(paused)

    def action_toggle_details(self) -> None:
        pane = self.query_one(DetailsPane)
        pane.display = not pane.display

    def action_reload(self) -> None:
        self.reload()

    # -- actions: writes (the flows are ActionFlows') -------------------------------------------

    def on_ref_tree_mark_requested(self) -> None:
        self.action_toggle_mark()

    def action_toggle_mark(self) -> None:
        if not self._refuse_read_only():
            self.flows.toggle_mark()

    def action_prune(self) -> None:
        if not self._refuse_read_only():
            self.flows.prune()

    def action_mark_chain(self) -> None:
        if not self._refuse_read_only():
            self.flows.mark_chain()

    def action_labels(self) -> None:
        if not self._refuse_read_only():
            self.flows.labels()

    def action_prune_policy(self) -> None:
        if not self._refuse_read_only():
            self.flows.prune_policy()

    def action_gc_preview(self) -> None:
        self.flows.gc_preview()

    def action_commit(self) -> None:
        if not self._refuse_read_only():
            self.flows.commit()

    def action_hold(self) -> None:
        if not self._refuse_read_only():
            self.flows.hold()

    def action_release(self) -> None:
        if not self._refuse_read_only():
            self.flows.release()

    def system_commands(self) -> Iterable[SystemCommand]:
        """The command palette's entries for this screen."""
        yield SystemCommand("Help", "Show every key", self.action_help)
        for spec in SORTS:
            yield SystemCommand(
                f"Sort by {spec.label}",
                f"{spec.help} (key {spec.key}; again reverses)",
                partial(self.action_sort_by, spec.kind),
            )
        yield SystemCommand("Filter", "Filter records (containerd syntax)", self.action_filter)
        yield SystemCommand(
            "Pause / resume", "Pause or resume live updates", self.action_toggle_live
        )
        yield SystemCommand("Reload", "Re-read the store", self.action_reload)
        yield SystemCommand("Details", "Show or hide the details pane", self.action_toggle_details)
        if not self.read_only:
            yield SystemCommand("Prune marked", "Prune the marked records", self.action_prune)
            yield SystemCommand(
                "Mark chain", "Mark the record with everything below it", self.action_mark_chain
            )
            yield SystemCommand("Label", "Set or remove labels on the record", self.action_labels)
            yield SystemCommand("Prune by policy", "Dry run, then prune", self.action_prune_policy)
            yield SystemCommand("Commit", "Commit the selected mutable", self.action_commit)
            yield SystemCommand("Hold", "Pin the selected record", self.action_hold)
            yield SystemCommand("Release", "Release or force-release", self.action_release)
