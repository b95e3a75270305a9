"""The Textual dashboard: ``CacheTuiApp`` and ``run_dashboard``.

Layout: a totals bar, the column header, the ref tree (``RefTree``), the filter bar
(``/``), the details pane (``i``) and the footer. All store work runs in thread workers
through ``CacheService``; the change feed posts ``StoreChanged`` messages that are folded
into the tree in place, one refresh at a time (changes that arrive meanwhile are merged).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from cachetui.core import (
    CacheError,
    ChangeSet,
    DiskStat,
    FilterSyntaxError,
    HolderInfo,
    LockedError,
    NotFoundError,
)
from cachetui.fleet_views import FleetView
from cachetui.messages import FeedStatus, StoreChanged
from cachetui.screens.dialogs import ConfirmPruneScreen, ForceReleaseScreen
from cachetui.screens.gcpreview import GCPreviewScreen
from cachetui.screens.help import HelpScreen
from cachetui.screens.policy import PolicyPruneScreen

if TYPE_CHECKING:
    from cachetui.fleet_service import FleetService
from cachetui.service import CacheService
from cachetui.views import Delta, DetailsView, PrunePlan, ReleaseResult, StoreView
from cachetui.widgets.format import escape, header_text, records, size
from cachetui.widgets.panels import (
    DetailsPane,
    FilterBar,
    HeaderBar,
    TotalsBar,
    details_text,
    header_line,
    store_details_text,
    totals_text,
)
from cachetui.widgets.ref_tree import SORT_KEYS, RefTree

__all__ = ["CacheTuiApp", "StoreChanged", "run_dashboard"]

#: Write keys and what they do (in read-only mode each says why it is off).
WRITE_KEYS = {
    "space": "mark",
    "d": "prune",
    "p": "prune by policy",
    "c": "commit",
    "h": "hold",
    "u": "release",
}

#: Actions that change the store: hidden and refused in read-only mode.
WRITE_ACTIONS = frozenset({"toggle_mark", "prune", "prune_policy", "commit", "hold", "release"})


#: Keys of the main screen (off while a dialog is open).
MAIN_ACTIONS = WRITE_ACTIONS | {
    "filter",
    "cycle_sort",
    "pause",
    "resume",
    "toggle_details",
    "reload",
    "clear_filter",
    "help",
}


def describe_error(err: BaseException) -> str:
    if isinstance(err, LockedError):
        return f"{err.id} is locked: another process holds it"
    if isinstance(err, NotFoundError):
        return f"not found: {err} (it may have been pruned meanwhile)"
    if isinstance(err, CacheError | OSError):
        return str(err) or type(err).__name__
    return f"{type(err).__name__}: {err}"


class CacheTuiApp(App[int]):
    """The cachetui dashboard over one store."""

    CSS_PATH = "app.tcss"
    TITLE = "cachetui"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("d", "prune", "Prune"),
        Binding("p", "prune_policy", "Policy"),
        Binding("g", "gc_preview", "GC list", show=False),
        Binding("c", "commit", "Commit"),
        Binding("h", "hold", "Hold"),
        Binding("u", "release", "Release"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "cycle_sort", "Sort"),
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
        root: str | os.PathLike[str],
        *,
        read_only: bool = False,
        clock: Callable[[], float] | None = None,
        live: bool = True,
        disk_stat: Callable[[Path], DiskStat] | None = None,
        service: CacheService | FleetService | None = None,
        preload: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        # What the header names: the store's directory, or a fleet's (masked) URL.
        self.place = str(service.root) if service is not None else str(root)
        self.read_only = read_only
        self.clock = clock or time.time
        self.live = live
        self.service = service or CacheService(
            self.root, read_only=read_only, clock=self.clock, disk_stat_fn=disk_stat
        )
        self.notes: list[tuple[str, str]] = []
        self.paused = False
        self.feed_error: str | None = None  # why live updates stopped (None: running)
        self.loaded = False
        self.load_error: str | None = None
        self.damage: str | None = None  # damaged metadata: every row shown may be partial
        self.refreshes = 0  # deltas applied (tests wait on it)
        self.filter_text = ""
        self._pending = ChangeSet()
        self._own_pending = False
        self._refreshing = False
        self._details_for: str | None = None
        self._filter_seq = 0  # the newest filter text; older matches are dropped
        self.details: DetailsView | None = None
        self._select_after_reload: str | None = None
        self._preload: Future[StoreView] | None = None
        if preload:  # read the store while Textual starts (the first paint comes sooner)
            self._preload = Future()
            threading.Thread(target=self._preload_run, name="cachetui-preload", daemon=True).start()

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield TotalsBar("Loading…", id="totals")
        yield Static(id="columns")
        yield RefTree(self.service.now, id="tree")
        yield FilterBar(id="filter-bar")
        yield DetailsPane("", id="details")
        yield Footer()

    @property
    def ref_tree(self) -> RefTree:
        return self.query_one(RefTree)

    @property
    def marks(self) -> set[str]:
        """The marked record ids (the tree owns them)."""
        return self.ref_tree.marks

    def on_mount(self) -> None:
        self.query_one(FilterBar).display = False
        self.sub_title = self.place + ("  [read-only]" if self.read_only else "")
        if hasattr(self.service, "on_notice"):  # a fleet: progress from the agents
            self.service.on_notice = self._notice_from_thread
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
        columns = self.query_one("#columns", Static)
        tree = self.ref_tree
        columns.update(header_text(tree.columns, tree.sort))

    def on_unmount(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the feed, release the dashboard's holds and close the store (idempotent).

        A preload still running is waited for first, so no thread keeps using the store.
        """
        preload, self._preload = self._preload, None
        if preload is not None:
            try:
                preload.result(timeout=30)
            except Exception:
                pass
        self.service.close()

    def notify(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Show a toast, and keep it in ``notes`` (tests and the log read them)."""
        self.notes.append((str(kwargs.get("severity", "information")), str(message)))
        super().notify(message, *args, **kwargs)

    # -- loading and live updates -----------------------------------------------------------

    def _preload_run(self) -> None:
        assert self._preload is not None
        try:
            self._preload.set_result(self.service.load())
        except BaseException as err:
            self._preload.set_exception(err)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load(self) -> None:
        try:
            preload, self._preload = self._preload, None
            view = preload.result() if preload is not None else self.service.load()
            # A fleet reads no local metadata: only a local store can be damaged.
            damage = self.service.damage() if isinstance(self.service, CacheService) else None
        except Exception as err:  # nothing crashes the app: show why it cannot open
            self.call_from_thread(self._load_failed, describe_error(err))
            return
        self.call_from_thread(self._loaded, view, damage)

    def _load_failed(self, message: str) -> None:
        self.load_error = message
        self.query_one(TotalsBar).update(f"Cannot open {self.place}: {message}")
        self.notify(message, title="cannot open the store", severity="error", timeout=30)

    def _loaded(self, view: StoreView, damage: str | None = None) -> None:
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
        tree.show(view)
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
        if self.live:
            try:
                self.service.start_watching(self._on_feed, self._feed_status_from_thread)
            except CacheError as err:
                self.notify(describe_error(err), title="live updates off", severity="warning")

    def _on_feed(self, changes: ChangeSet) -> None:  # a background thread
        self.post_message(StoreChanged(changes))

    def _feed_status_from_thread(self, reason: str | None) -> None:  # a background thread
        # Not named _on_feed_status: Textual would call that for every FeedStatus message.
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
            self.reload(own=True)  # catch up with what happened meanwhile

    def on_store_changed(self, message: StoreChanged) -> None:
        self._pending = self._pending.merge(message.changes)
        if message.own:
            self._own_pending = True
        self._kick()

    def _kick(self) -> None:
        if self._refreshing or not self._pending or not self.loaded:
            return
        if self.paused and not self._own_pending:
            return  # others' changes wait; the results of our own actions never do
        changes, self._pending = self._pending, ChangeSet()
        self._own_pending = False
        self._refreshing = True
        self._refresh(changes)

    @work(thread=True, group="refresh", exit_on_error=False)
    def _refresh(self, changes: ChangeSet) -> None:
        try:
            delta: Delta | None = self.service.apply(changes)
        except Exception as err:
            self.call_from_thread(self.notify, describe_error(err), severity="warning")
            delta = None
        matches = None
        # A size-only change (a file written in a layer) cannot change what matches:
        # the filter keys have no size. Re-match only when the metadata changed.
        if delta and self.filter_text and changes.metadata:
            try:
                matches = self.service.matching(self.filter_text)
            except FilterSyntaxError:
                matches = None
        self.call_from_thread(self._apply_delta, delta, matches)

    def _apply_delta(self, delta: Delta | None, matches: frozenset[str] | None) -> None:
        self._refreshing = False
        if delta:
            self.ref_tree.apply_delta(delta, matches)
            wanted = self._select_after_reload
            if wanted is not None and wanted in delta.view.rows:
                self._select_after_reload = None
                self.ref_tree.select_id(wanted)
            self._update_totals()
            self._update_filter_count()
            self._request_details(force=True)
        self.refreshes += 1
        self._kick()

    def _notice_from_thread(self, message: str, severity: str = "information") -> None:
        self.call_from_thread(self.notify, message, severity=severity)

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
            self.call_from_thread(self.notify, describe_error(err), severity="error")
            return
        self.call_from_thread(self._records_read, key, delta)

    def _records_read(self, key: str, delta: Delta) -> None:
        self.ref_tree.records_loaded(delta.view, key)
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

    def reload(self, *, own: bool = True) -> None:
        """Re-read the store; ``own``: after our own action, shown even while paused."""
        self.post_message(StoreChanged(ChangeSet(frozenset(), True), own=own))

    # -- totals and details -------------------------------------------------------------------

    def _update_totals(self) -> None:
        view = self.service.view
        if view is None:
            return
        marked_bytes = sum(view.rows[m].size for m in self.marks if m in view.rows)
        text = totals_text(
            view.totals,
            live=self._live_state(),
            sort=self.ref_tree.sort,
            marks=len(self.marks),
            marked_bytes=marked_bytes,
        )
        if self.damage is not None:
            text = Text.assemble(("METADATA DAMAGED (read-only, partial)", "bold red"), "  ", text)
        self.query_one(TotalsBar).update(text)

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
        self.call_from_thread(self._show_details, details)

    def _show_details(self, details: DetailsView) -> None:
        if details.record.id != self.ref_tree.cursor_id:
            return
        self.details = details
        view = self.service.view
        if isinstance(view, FleetView) and details.record.id in view.stores:
            text = store_details_text(view.stores[details.record.id], self.service.now())
            self.query_one(DetailsPane).update(text)
            return
        self.query_one(DetailsPane).update(details_text(details, self.service.now()))

    # -- which keys work now ------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "refuse_read_only":
            return self.read_only and len(self.screen_stack) == 1
        if self.read_only and action in WRITE_ACTIONS:
            return False  # hidden; the key falls through to refuse_read_only, which says why
        if action == "pause" and self.paused:
            return False
        if action == "resume" and not self.paused:
            return False
        # the main screen's keys do nothing while a dialog is open
        return not (action in MAIN_ACTIONS and len(self.screen_stack) > 1)

    def action_refuse_read_only(self, what: str) -> None:
        reason = self.service.read_only_reason or "--read-only"
        self.notify(f"read-only ({reason}): {what} is off", severity="warning")

    def _refuse_read_only(self) -> bool:
        if self.read_only:
            self.action_refuse_read_only("this action")
            return True
        return False

    # -- background helper --------------------------------------------------------------------

    def background(
        self,
        fn: Callable[[], Any],
        then: Callable[[Any], None] | None = None,
        *,
        title: str = "",
    ) -> None:
        """Run a blocking service call in a thread; errors become notifications."""

        def runner() -> None:
            try:
                result = fn()
            except Exception as err:
                self.call_from_thread(
                    self.notify, describe_error(err), title=title, severity="error"
                )
                return
            if then is not None:
                self.call_from_thread(then, result)

        self.run_worker(runner, thread=True, group="actions", exit_on_error=False)

    # -- actions: view --------------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen(read_only=self.read_only))

    def action_cycle_sort(self) -> None:
        tree = self.ref_tree
        tree.set_sort(SORT_KEYS[(SORT_KEYS.index(tree.sort) + 1) % len(SORT_KEYS)])
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
        self._kick()

    def action_toggle_details(self) -> None:
        pane = self.query_one(DetailsPane)
        pane.display = not pane.display

    def action_reload(self) -> None:
        self.reload()

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
        self.filter_text = ""
        self._filter_seq += 1  # a match still running is stale now
        self.ref_tree.set_filter(None)
        self.ref_tree.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        bar = self.query_one(FilterBar)
        text = event.value
        self._filter_seq += 1
        if not text.strip():
            bar.show_error(text, None)
            self._apply_filter("", None)
            return
        self._match(text, self._filter_seq)

    @work(thread=True, exclusive=True, group="filter", exit_on_error=False)
    def _match(self, text: str, seq: int) -> None:
        """Parse and match off the UI thread (100,000 records take a while)."""
        try:
            matches = self.service.matching(text)
        except FilterSyntaxError as err:
            self.call_from_thread(self._filter_error, text, err, seq)
            return
        self.call_from_thread(self._filter_matched, text, matches, seq)

    def _filter_error(self, text: str, err: FilterSyntaxError, seq: int) -> None:
        if seq == self._filter_seq:
            self.query_one(FilterBar).show_error(text, err.position, str(err).split(": ", 1)[-1])

    def _filter_matched(self, text: str, matches: frozenset[str], seq: int) -> None:
        if seq == self._filter_seq:
            self._apply_filter(text, matches)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
        try:
            self.service.check_filter(event.value)
        except FilterSyntaxError:
            return
        self.ref_tree.focus()

    def _apply_filter(self, text: str, matches: frozenset[str] | None) -> None:
        """Show what ``text`` matches (every match revealed, ancestors as context)."""
        self.filter_text = text.strip()
        if not self.filter_text or matches is None:
            self.filter_text = ""
            self.ref_tree.set_filter(None)
            self._update_filter_count()
            return
        self.ref_tree.set_filter(matches)
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
        bar.show_count(len(matches), len(view.rows))

    # -- actions: marks and prune ------------------------------------------------------------

    def _selected(self) -> str | None:
        record_id = self.ref_tree.cursor_id
        if record_id is None:
            self.notify("no record selected", severity="warning")
        return record_id

    def action_toggle_mark(self) -> None:
        if self._refuse_read_only():
            return
        record_id = self._selected()
        view = self.service.view
        if record_id is None or view is None or record_id not in view.rows:
            return
        tree = self.ref_tree
        if record_id not in tree.marks:
            reason = view.rows[record_id].refusal  # the core's rule, as prune applies it
            if reason is not None:
                self.notify(f"cannot mark {record_id[:12]}: {reason}", severity="warning")
                return
        tree.toggle_mark(record_id)
        self._update_totals()
        tree.action_cursor_down()

    def action_prune(self) -> None:
        if self._refuse_read_only():
            return
        view = self.service.view
        if view is None:
            return
        ids = sorted(self.marks)
        if not ids:
            record_id = self._selected()
            if record_id is None or record_id not in view.rows:
                return
            reason = view.rows[record_id].refusal
            if reason is not None:
                self.notify(f"cannot prune {record_id[:12]}: {reason}", severity="warning")
                return
            ids = [record_id]
        self.background(lambda: self.service.plan_prune(ids), self._confirm_prune, title="prune")

    def _confirm_prune(self, plan: PrunePlan) -> None:
        if plan.gone:
            self.ref_tree.drop_marks(plan.gone)
            self._update_totals()
        if not plan.rows:
            reasons = [f"{i[:12]}: {r}" for i, r in plan.refused]
            reasons += [f"{i[:12]}: already gone" for i in plan.gone]
            self.notify(
                f"nothing can be pruned ({'; '.join(reasons) or 'nothing to do'})",
                severity="warning",
            )
            self.reload()
            return

        def decided(yes: bool | None) -> None:
            if yes:
                ids = list(plan.ids)
                self.background(
                    lambda: self.service.prune_ids(ids), self._pruned, title="prune failed"
                )

        self.push_screen(ConfirmPruneScreen(plan), decided)

    def _pruned(self, result: PrunePlan) -> None:
        tree = self.ref_tree
        tree.drop_marks((*result.ids, *result.gone))
        parts = [f"pruned {records(len(result.rows))}, freed {size(result.freed)}"]
        if result.gone:
            parts.append(f"{records(len(result.gone))} already gone")
        if result.refused:
            kept = "; ".join(f"{i[:12]}: {r}" for i, r in result.refused)
            parts.append(f"kept {kept}")
        self.notify(", ".join(parts))
        self._update_totals()
        self.reload()

    def action_prune_policy(self) -> None:
        if self._refuse_read_only():
            return

        def closed(freed: int | None) -> None:
            if freed:
                self.notify(f"freed {size(freed)}")
            self.reload()

        if not isinstance(self.service, CacheService):
            self.notify(
                "prune by policy is per host on a fleet: "
                "cachetui prune --fleet-url URL --store NAME (or --all-stores)",
                severity="warning",
            )
            return
        self.push_screen(PolicyPruneScreen(self.service), closed)

    def action_gc_preview(self) -> None:
        """The GC list tier by tier, and why the selected record is still here (read-only
        too: it is a dry run)."""
        selected = self.ref_tree.cursor_id if self.loaded else None
        if not isinstance(self.service, CacheService):
            self.notify("the GC preview is per host: run it on the host", severity="warning")
            return
        self.push_screen(GCPreviewScreen(self.service, selected))

    # -- actions: commit, hold, release --------------------------------------------------------

    def action_commit(self) -> None:
        if self._refuse_read_only():
            return
        record_id = self._selected()
        view = self.service.view
        if record_id is None or view is None or record_id not in view.rows:
            return
        row = view.rows[record_id]
        if not row.mutable:
            self.notify(f"{record_id[:12]} is already committed", severity="warning")
            return
        if row.held:
            self.notify(f"cannot commit {record_id[:12]}: {row.refusal}", severity="warning")
            return

        def committed(new_id: str) -> None:
            self.notify(f"committed {record_id[:12]} as {new_id[:12]}")
            self._select_after_reload = new_id
            self.reload()

        self.background(lambda: self.service.commit(record_id), committed, title="commit failed")

    def action_hold(self) -> None:
        if self._refuse_read_only():
            return
        record_id = self._selected()
        if record_id is None:
            return

        def held(ref_id: str) -> None:
            self.notify(f"holding {ref_id[:12]} (pinned against prune; u releases)")
            self.reload()

        self.background(lambda: self.service.hold(record_id), held, title="hold failed")

    def action_release(self) -> None:
        if self._refuse_read_only():
            return
        record_id = self._selected()
        view = self.service.view
        if record_id is None or view is None or record_id not in view.rows:
            return
        if record_id in view.pinned:

            def released(count: int) -> None:
                self.notify(f"released {record_id[:12]}")
                self.reload()

            self.background(lambda: self.service.release(record_id), released, title="release")
            return
        self.background(
            lambda: self.service.details(record_id), self._offer_force_release, title="release"
        )

    def _offer_force_release(self, details: DetailsView) -> None:
        others = tuple(h for h in details.holders if h.id not in details.mine)
        record_id = details.record.id
        if not others:
            self.notify(f"nobody else holds {record_id[:12]}", severity="information")
            return

        def decided(yes: bool | None) -> None:
            if not yes:
                return
            chosen: tuple[HolderInfo, ...] = others

            def done(result: ReleaseResult) -> None:
                failed = bool(result.still_held_by) or not result.released
                self.notify(result.message(), severity="warning" if failed else "information")
                self.reload()

            self.background(
                lambda: self.service.force_release(record_id, chosen), done, title="release"
            )

        self.push_screen(ForceReleaseScreen(record_id, others, self.service.now()), decided)

    # -- command palette ------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Show every key", self.action_help)
        yield SystemCommand("Sort", "Cycle the sort: size, last used, name", self.action_cycle_sort)
        yield SystemCommand("Filter", "Filter records (containerd syntax)", self.action_filter)
        yield SystemCommand(
            "Pause / resume", "Pause or resume live updates", self.action_toggle_live
        )
        yield SystemCommand("Reload", "Re-read the store", self.action_reload)
        yield SystemCommand("Details", "Show or hide the details pane", self.action_toggle_details)
        if not self.read_only:
            yield SystemCommand("Prune marked", "Prune the marked records", self.action_prune)
            yield SystemCommand("Prune by policy", "Dry run, then prune", self.action_prune_policy)
            yield SystemCommand("Commit", "Commit the selected mutable", self.action_commit)
            yield SystemCommand("Hold", "Pin the selected record", self.action_hold)
            yield SystemCommand("Release", "Release or force-release", self.action_release)


def run_dashboard(
    root: Path,
    *,
    read_only: bool = False,
    simulator: bool = False,
    fleet_url: str | None = None,
) -> int:
    """Open the dashboard on ``root`` (or on the fleet at ``fleet_url``); with
    ``simulator``, run the demo build beside it."""
    if fleet_url is not None:
        from cachetui.fleet_service import FleetService

        fleet = FleetService(fleet_url, read_only=read_only)
        fleet_app = CacheTuiApp(fleet.root, read_only=read_only, service=fleet, preload=True)
        try:
            result = fleet_app.run()
            return 1 if fleet_app.load_error else int(result or 0)
        finally:
            fleet_app.shutdown()
    process = None
    if simulator:
        from cachetui.demo import start_simulator

        process = start_simulator(root)
    app: CacheTuiApp | None = None
    try:
        app = CacheTuiApp(root, read_only=read_only, preload=True)
        result = app.run()
        if app.load_error:
            return 1
        return int(result or 0)
    finally:
        if app is not None:
            app.shutdown()
        if process is not None:
            from cachetui.demo import stop_simulator

            stop_simulator(process)
