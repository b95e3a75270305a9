"""The dashboard's write flows: mark, prune, prune by policy, commit, hold, release.

``ActionFlows`` is a widget that is never drawn; the main screen's keys call it. Each
flow checks what it can on the UI thread (the core's refusal, as the row says it), runs
the store call in a worker, and the worker posts a typed message with the result
(``PrunePlanned``, ``Pruned``, ``Committed``, ...); its handler asks for confirmation
or says what happened, then asks ``LiveUpdates`` for a re-read. A store call that fails
posts ``ActionFailed`` instead (``reports``), titled after its flow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import work
from textual.widget import Widget

from cachetui.core import HolderInfo
from cachetui.messages import (
    ActionFailed,
    Committed,
    ForceReleased,
    Held,
    Pruned,
    PrunePlanned,
    Released,
    ReleaseOffered,
)
from cachetui.screens.dialogs import ConfirmPruneScreen, ForceReleaseScreen
from cachetui.screens.gcpreview import GCPreviewScreen
from cachetui.screens.live import LiveUpdates
from cachetui.screens.policy import PolicyPruneScreen
from cachetui.service import CacheService
from cachetui.views import StoreView
from cachetui.widgets.format import describe_error, records, size
from cachetui.widgets.ref_tree import RefTree

if TYPE_CHECKING:
    from cachetui.fleet_service import FleetService

__all__ = ["ActionFlows"]

Worker = Callable[..., None]


def reports(title: str) -> Callable[[Worker], Worker]:
    """A worker whose store call fails posts ``ActionFailed(title, why)`` (a typed message,
    shown as an error notification titled after its flow)."""

    def wrap(fn: Worker) -> Worker:
        @functools.wraps(fn)
        def run(self: ActionFlows, *args: object) -> None:
            try:
                fn(self, *args)
            except Exception as err:
                self.post_message(ActionFailed(title, describe_error(err)))

        return run

    return wrap


class ActionFlows(Widget):
    """The write flows of the main screen (never drawn)."""

    DEFAULT_CSS = "ActionFlows { display: none; }"

    def __init__(
        self, service: CacheService | FleetService, tree: RefTree, live: LiveUpdates
    ) -> None:
        super().__init__(id="action-flows")
        self.service = service
        self.ref_tree = tree
        self.live = live

    # -- helpers ----------------------------------------------------------------------------

    def _selected(self) -> str | None:
        record_id = self.ref_tree.cursor_id
        if record_id is None:
            self.notify("no record selected", severity="warning")
        return record_id

    def _selected_row(self) -> tuple[str, StoreView] | None:
        record_id = self._selected()
        view = self.service.view
        if record_id is None or view is None or record_id not in view.rows:
            return None
        return record_id, view

    def on_action_failed(self, message: ActionFailed) -> None:
        self.notify(message.reason, title=message.title, severity="error")

    # -- marks and prune ----------------------------------------------------------------------

    def toggle_mark(self) -> None:
        selected = self._selected_row()
        if selected is None:
            return
        record_id, view = selected
        if record_id not in self.ref_tree.marks:
            reason = view.rows[record_id].refusal  # the core's rule, as prune applies it
            if reason is not None:
                self.notify(f"cannot mark {record_id[:12]}: {reason}", severity="warning")
                return
        self.ref_tree.toggle_mark(record_id)
        self.ref_tree.action_cursor_down()

    def prune(self) -> None:
        view = self.service.view
        if view is None:
            return
        ids = sorted(self.ref_tree.marks)
        if not ids:
            record_id = self._selected()
            if record_id is None or record_id not in view.rows:
                return
            reason = view.rows[record_id].refusal
            if reason is not None:
                self.notify(f"cannot prune {record_id[:12]}: {reason}", severity="warning")
                return
            ids = [record_id]
        self._plan_prune(ids)

    @work(thread=True, group="actions", exit_on_error=False)
    @reports("prune")
    def _plan_prune(self, ids: list[str]) -> None:
        self.post_message(PrunePlanned(self.service.plan_prune(ids)))

    def on_prune_planned(self, message: PrunePlanned) -> None:
        plan = message.plan
        if plan.gone:
            self.ref_tree.drop_marks(plan.gone)
        if not plan.rows:
            reasons = [f"{i[:12]}: {r}" for i, r in plan.refused]
            reasons += [f"{i[:12]}: already gone" for i in plan.gone]
            self.notify(
                f"nothing can be pruned ({'; '.join(reasons) or 'nothing to do'})",
                severity="warning",
            )
            self.live.reload()
            return

        def decided(yes: bool | None) -> None:
            if yes:
                self._prune(list(plan.ids))

        self.app.push_screen(ConfirmPruneScreen(plan), decided)

    @work(thread=True, group="actions", exit_on_error=False)
    @reports("prune failed")
    def _prune(self, ids: list[str]) -> None:
        self.post_message(Pruned(self.service.prune_ids(ids)))

    def on_pruned(self, message: Pruned) -> None:
        result = message.result
        self.ref_tree.drop_marks((*result.ids, *result.gone))
        parts = [f"pruned {records(len(result.rows))}, freed {size(result.freed)}"]
        if result.gone:
            parts.append(f"{records(len(result.gone))} already gone")
        if result.refused:
            kept = "; ".join(f"{i[:12]}: {r}" for i, r in result.refused)
            parts.append(f"kept {kept}")
        self.notify(", ".join(parts))
        self.live.reload()

    def prune_policy(self) -> None:
        if not isinstance(self.service, CacheService):
            self.notify(
                "prune by policy is per host on a fleet: "
                "cachetui prune --fleet-url URL --store NAME (or --all-stores)",
                severity="warning",
            )
            return

        def closed(freed: int | None) -> None:
            if freed:
                self.notify(f"freed {size(freed)}")
            self.live.reload()

        self.app.push_screen(PolicyPruneScreen(self.service), closed)

    def gc_preview(self) -> None:
        """The GC list tier by tier, and why the selected record is still here (read-only
        too: it is a dry run)."""
        if not isinstance(self.service, CacheService):
            self.notify("the GC preview is per host: run it on the host", severity="warning")
            return
        self.app.push_screen(GCPreviewScreen(self.service, self.ref_tree.cursor_id))

    # -- commit, hold, release ------------------------------------------------------------------

    def commit(self) -> None:
        selected = self._selected_row()
        if selected is None:
            return
        record_id, view = selected
        row = view.rows[record_id]
        if not row.mutable:
            self.notify(f"{record_id[:12]} is already committed", severity="warning")
            return
        if row.held:
            self.notify(f"cannot commit {record_id[:12]}: {row.refusal}", severity="warning")
            return
        self._commit(record_id)

    @work(thread=True, group="actions", exit_on_error=False)
    @reports("commit failed")
    def _commit(self, record_id: str) -> None:
        self.post_message(Committed(record_id, self.service.commit(record_id)))

    def on_committed(self, message: Committed) -> None:
        self.notify(f"committed {message.record_id[:12]} as {message.new_id[:12]}")
        self.live.reload(select=message.new_id)

    def hold(self) -> None:
        record_id = self._selected()
        if record_id is not None:
            self._hold(record_id)

    @work(thread=True, group="actions", exit_on_error=False)
    @reports("hold failed")
    def _hold(self, record_id: str) -> None:
        self.post_message(Held(self.service.hold(record_id)))

    def on_held(self, message: Held) -> None:
        self.notify(f"holding {message.record_id[:12]} (pinned against prune; u releases)")
        self.live.reload()

    def release(self) -> None:
        selected = self._selected_row()
        if selected is None:
            return
        record_id, view = selected
        if record_id in view.pinned:
            self._release(record_id)
        else:
            self._offer_release(record_id)

    @work(thread=True, group="actions", exit_on_error=False)
    @reports("release")
    def _release(self, record_id: str) -> None:
        self.service.release(record_id)
        self.post_message(Released(record_id))

    def on_released(self, message: Released) -> None:
        self.notify(f"released {message.record_id[:12]}")
        self.live.reload()

    @work(thread=True, group="actions", exit_on_error=False)
    @reports("release")
    def _offer_release(self, record_id: str) -> None:
        self.post_message(ReleaseOffered(self.service.details(record_id)))

    def on_release_offered(self, message: ReleaseOffered) -> None:
        details = message.details
        others = tuple(h for h in details.holders if h.id not in details.mine)
        record_id = details.record.id
        if not others:
            self.notify(f"nobody else holds {record_id[:12]}", severity="information")
            return

        def decided(yes: bool | None) -> None:
            if yes:
                self._force_release(record_id, others)

        self.app.push_screen(ForceReleaseScreen(record_id, others, self.service.now()), decided)

    @work(thread=True, group="actions", exit_on_error=False)
    @reports("release")
    def _force_release(self, record_id: str, holders: tuple[HolderInfo, ...]) -> None:
        self.post_message(ForceReleased(self.service.force_release(record_id, holders)))

    def on_force_released(self, message: ForceReleased) -> None:
        result = message.result
        failed = bool(result.still_held_by) or not result.released
        self.notify(result.message(), severity="warning" if failed else "information")
        self.live.reload()
