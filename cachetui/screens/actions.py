"""The dashboard's write flows: mark (a record, or a whole chain), prune, prune by policy,
label, commit, hold, release.

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
    ChainPlanned,
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
from cachetui.screens.labels import LabelScreen
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
        #: Chains marked with ``x``: each top record and every record of its chain.
        self.chains: dict[str, frozenset[str]] = {}

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
        root = self._chain_of(record_id)
        if root is not None:
            self.notify(
                f"{record_id[:12]} is marked with the chain of {root[:12]} (x on it unmarks it)",
                severity="warning",
            )
            return
        if record_id not in self.ref_tree.marks:
            reason = view.rows[record_id].refusal  # the core's rule, as prune applies it
            if reason is not None:
                hint = " (x marks it with everything below it)" if view.child_ids(record_id) else ""
                self.notify(f"cannot mark {record_id[:12]}: {reason}{hint}", severity="warning")
                return
        self.ref_tree.toggle_mark(record_id)
        self.ref_tree.action_cursor_down()

    # -- whole chains -----------------------------------------------------------------------

    def _chain_of(self, record_id: str) -> str | None:
        """The chain (marked with ``x``) this record belongs to, by its top record."""
        marks = self.ref_tree.marks
        for root, ids in list(self.chains.items()):
            if not ids <= marks:  # some went away (pruned elsewhere): no longer a chain
                del self.chains[root]
                continue
            if record_id in ids:
                return root
        return None

    def mark_chain(self) -> None:
        """``x``: mark the record with everything below it, if the core says the chain
        can go; on a marked chain's top record, unmark the chain."""
        selected = self._selected_row()
        if selected is None:
            return
        record_id, _view = selected
        root = self._chain_of(record_id)
        if root is not None:
            if root != record_id:
                self.notify(
                    f"{record_id[:12]} is in the chain of {root[:12]} (x on it unmarks it)",
                    severity="warning",
                )
                return
            self.ref_tree.drop_marks(self.chains.pop(root))
            self.notify(f"unmarked the chain of {root[:12]}")
            return
        if not isinstance(self.service, CacheService):
            self.notify("a whole chain is marked on its host: not on a fleet", severity="warning")
            return
        self._plan_chain(self.service, record_id)

    @work(thread=True, group="actions", exit_on_error=False)
    @reports("mark chain")
    def _plan_chain(self, service: CacheService, record_id: str) -> None:
        self.post_message(ChainPlanned(record_id, service.plan_chain([record_id])))

    def on_chain_planned(self, message: ChainPlanned) -> None:
        root, plan = message.root, message.plan
        if plan.refused:
            blocker, reason = plan.refused[0]
            more = f" (and {len(plan.refused) - 1} more)" if len(plan.refused) > 1 else ""
            self.notify(
                f"cannot mark the chain of {root[:12]}: {blocker[:12]} inside it: {reason}{more}",
                severity="warning",
            )
            return
        if not plan.rows:
            self.notify(f"{root[:12]} is gone (removed meanwhile)", severity="warning")
            self.live.reload()
            return
        ids = frozenset(plan.ids)
        for other in [r for r in self.chains if r in ids]:
            del self.chains[other]  # a chain inside this one: now part of it
        self.chains[root] = ids
        self.ref_tree.add_marks(ids)
        node = self.ref_tree.nodes.get(root)
        if node is not None and node.allow_expand and not node.is_expanded:
            self.ref_tree.select_id(root, expand=False)
            self.ref_tree.action_toggle_expand_all()  # show every record that is marked
        self.notify(
            f"marked the chain of {root[:12]}: {records(len(ids))}, frees {size(plan.freed)} "
            "(d prunes it)"
        )

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
                hint = " (x marks it with everything below it)" if view.child_ids(record_id) else ""
                self.notify(f"cannot prune {record_id[:12]}: {reason}{hint}", severity="warning")
                return
            ids = [record_id]
        chains = any(self._chain_of(i) is not None for i in ids)
        self._plan_prune(ids, chains)

    @work(thread=True, group="actions", exit_on_error=False)
    @reports("prune")
    def _plan_prune(self, ids: list[str], chains: bool = False) -> None:
        service = self.service
        if chains and isinstance(service, CacheService):
            # Exactly the marks, as one chain: leaves first, or nothing (the core's plan).
            self.post_message(PrunePlanned(service.plan_chain(ids, descendants=False)))
            return
        self.post_message(PrunePlanned(service.plan_prune(ids)))

    def on_prune_planned(self, message: PrunePlanned) -> None:
        plan = message.plan
        if plan.gone:
            self.ref_tree.drop_marks(plan.gone)
        if plan.chains and plan.refused:
            blocker, reason = plan.refused[0]
            self.notify(
                f"cannot prune the chain: {blocker[:12]} inside it: {reason}; nothing was removed",
                severity="warning",
            )
            self.live.reload()
            return
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
                self._prune(list(plan.ids), bool(plan.chains))

        self.app.push_screen(ConfirmPruneScreen(plan), decided)

    @work(thread=True, group="actions", exit_on_error=False)
    @reports("prune failed")
    def _prune(self, ids: list[str], chains: bool = False) -> None:
        service = self.service
        if chains and isinstance(service, CacheService):
            self.post_message(Pruned(service.prune_chain(ids)))  # leaves first, or nothing
            return
        self.post_message(Pruned(service.prune_ids(ids)))

    def on_pruned(self, message: Pruned) -> None:
        result = message.result
        self.ref_tree.drop_marks((*result.ids, *result.gone))
        self._chain_of("")  # forget the chains that went
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

    # -- labels -----------------------------------------------------------------------------------

    def labels(self) -> None:
        """``L``: set or remove labels on the selected record (the core checks them)."""
        selected = self._selected_row()
        if selected is None:
            return
        record_id, view = selected
        if not isinstance(self.service, CacheService):
            self.notify("labels are set on the host: not on a fleet", severity="warning")
            return
        set_labels = self.service.set_labels

        def done(labels: dict[str, str] | None) -> None:
            if labels is None:
                return
            shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
            self.notify(f"labels of {record_id[:12]}: {shown}")
            self.live.reload()

        self.app.push_screen(LabelScreen(record_id, view.rows[record_id].labels, set_labels), done)

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
