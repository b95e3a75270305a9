"""Live updates: changes in, one refresh at a time, views out.

``LiveUpdates`` is a widget that is never drawn; it exists for its message queue. The
change feed posts ``StoreChanged`` to it from its threads, and so does the dashboard after
its own actions. A widget handles its messages one after another, and its handler waits
for the refresh worker: while one refresh runs, the changes that arrive queue up behind
it and fold into one (``StoreChanged.can_replace``). The worker builds ``ViewRefreshed``
(the delta, the filter re-matched, the details under the cursor), which bubbles up to the
screen that draws it: one trip from the change to the screen, none back. While paused,
others' changes are held here (merged) and sent on resume; the results of the
dashboard's own actions never wait.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.widget import Widget
from textual.worker import WorkerCancelled, WorkerFailed

from cachetui.core import ChangeSet, FilterSyntaxError
from cachetui.messages import StoreChanged, ViewRefreshed
from cachetui.widgets.format import describe_error
from cachetui.widgets.ref_tree import RefTree, shown_for

if TYPE_CHECKING:
    from cachetui.fleet_service import FleetService
    from cachetui.service import CacheService

__all__ = ["LiveUpdates"]


class LiveUpdates(Widget):
    """Folds store changes into the view, one refresh at a time (never drawn)."""

    DEFAULT_CSS = "LiveUpdates { display: none; }"

    def __init__(self, service: CacheService | FleetService, tree: RefTree) -> None:
        super().__init__(id="live-updates")
        self.service = service
        self.ref_tree = tree  # where the cursor is: its details come with each refresh
        self.ready = False  # the first view is shown: changes before it are in it
        self.paused = False
        self.filter_text = ""  # what a refresh re-matches when the metadata changed
        self.held = ChangeSet()  # others' changes while paused
        self.held_select: str | None = None

    def changed(self, changes: ChangeSet) -> None:  # the change feed's threads
        self.post_message(StoreChanged(changes))

    def reload(self, *, own: bool = True, select: str | None = None) -> None:
        """Re-read the store; ``own``: after our own action, shown even while paused."""
        self.post_message(StoreChanged(ChangeSet(frozenset(), True), own=own, select=select))

    def start(self) -> None:
        """The first view is shown: apply what arrived meanwhile."""
        self.ready = True
        self._release_held()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not paused:
            self._release_held()

    def _release_held(self) -> None:
        if self.held:
            self.post_message(StoreChanged(self.held, select=self.held_select))
            self.held, self.held_select = ChangeSet(), None

    async def on_store_changed(self, message: StoreChanged) -> None:
        message.stop()
        changes, select = message.changes, message.select
        if not self.ready or (self.paused and not message.own):
            # others' changes wait for resume; our own take everything held with them
            self.held = self.held.merge(changes)
            self.held_select = select or self.held_select
            return
        if self.held:
            changes, select = self.held.merge(changes), select or self.held_select
            self.held, self.held_select = ChangeSet(), None
        worker = self.run_worker(
            partial(self._refresh, changes, self.filter_text, self.ref_tree.cursor_id, select),
            thread=True,
            group="refresh",
            exit_on_error=False,
        )
        try:
            refreshed = await worker.wait()
        except WorkerCancelled:  # the app is closing
            return
        except WorkerFailed as failed:
            self.notify(describe_error(failed.error), severity="warning")
            refreshed = ViewRefreshed(None, select=select)
        self.post_message(refreshed)

    def _refresh(
        self, changes: ChangeSet, filter_text: str, cursor: str | None, select: str | None
    ) -> ViewRefreshed:
        """In a worker thread: the change folded into the view, with everything the screen
        shows of it (the filter re-matched, the details under the cursor), so the screen
        draws it at once and asks the service nothing more."""
        delta = self.service.apply(changes)
        if not delta:
            return ViewRefreshed(delta, select=select)
        matches = shown = None
        # A size-only change (a file written in a layer) cannot change what matches:
        # the filter keys have no size. Re-match only when the metadata changed.
        if filter_text and changes.metadata:
            try:
                matches = self.service.matching(filter_text)
                shown = shown_for(matches, delta.view)
            except FilterSyntaxError:
                matches = None
        details = None
        wanted = select if select in delta.view.rows else cursor
        if wanted is not None and wanted in delta.view.rows:
            try:
                details = self.service.details(wanted)
            except Exception:  # the pane keeps what it shows; the next change retries
                details = None
        return ViewRefreshed(delta, matches=matches, shown=shown, details=details, select=select)
