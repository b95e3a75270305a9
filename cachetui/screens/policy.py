"""Prune by policy (``p``): all, filters, keep duration and space limits.

The screen shows the dry-run result (records and bytes) before anything is removed, then
a progress bar while the prune runs, and the freed total at the end. All store work goes
through the service in thread workers, which post typed messages back to this screen.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Static

from cachetui.core import CacheError, PruneInterrupted, PruneOptions
from cachetui.messages import (
    PolicyPlanFailed,
    PolicyPlanned,
    PolicyPruneEnded,
    PolicyPruneProgress,
)
from cachetui.service import CacheService
from cachetui.units import parse_duration, parse_size
from cachetui.views import PlanRow, PrunePlan, plan_row
from cachetui.widgets.format import escape, records, size

__all__ = ["PolicyPruneScreen"]

MAX_LISTED = 100
ALL_OFF = "off: internal, frontend and shared records stay"
ALL_ON = "ON: internal, frontend and shared records too"


def _kept(summary: Text, plan: PrunePlan, verb: str = "Kept") -> None:
    """Add what the core keeps although the policy chose it (a filesystem mounted in its
    layer), each with its reason: the rest goes."""
    if plan.refused:
        summary.append(f"\n{verb} {records(len(plan.refused))}: ", style="bold yellow")
        summary.append("; ".join(f"{i[:12]}: {r}" for i, r in plan.refused))


class _Cancelled(Exception):
    """Raised from the progress callback to stop a running prune between batches."""


class PolicyPruneScreen(ModalScreen[int]):
    """Dismisses with the bytes freed (0 when nothing was pruned)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+g", "gc_list", "GC list", show=False),
    ]

    def __init__(self, service: CacheService) -> None:
        super().__init__()
        self.service = service
        self.plan: PrunePlan | None = None
        self.options: PruneOptions | None = None
        self.freed = 0
        self.done: list[PlanRow] = []
        self.running = False
        self.finished = False
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="policy"):
            yield Static("Prune by policy", classes="title")
            with Grid(id="policy-form"):
                yield Label("All")
                yield Checkbox(ALL_OFF, id="all")
                yield Label("Filters")
                yield Input(placeholder="e.g. type==regular,mutable", id="filters")
                yield Label("Keep")
                yield Input(placeholder="duration, e.g. 24h (keep newer)", id="keep")
                yield Label("Reserved")
                yield Input(placeholder="always keep, e.g. 10GB or 10%", id="reserved")
                yield Label("Max used")
                yield Input(placeholder="e.g. 20GB", id="max-used")
                yield Label("Min free")
                yield Input(placeholder="e.g. 5GB", id="min-free")
            yield Static(
                "Preview (dry run) shows what would go. Nothing is removed yet.", id="summary"
            )
            with VerticalScroll(classes="listing"):
                yield Static("", id="preview")
            with Vertical(classes="footer"):  # docked: visible at 80x24 after a preview
                yield ProgressBar(id="progress", show_eta=False)
                with Horizontal(classes="buttons"):
                    yield Button("Preview", id="preview-button", variant="primary", compact=True)
                    yield Button(
                        "Prune", id="prune-button", variant="error", disabled=True, compact=True
                    )
                    yield Button("Close", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#progress", ProgressBar).display = False
        self.query_one("#filters", Input).focus()

    # -- form -------------------------------------------------------------------------------

    def read_options(self) -> PruneOptions:
        def text(widget_id: str) -> str:
            return self.query_one(f"#{widget_id}", Input).value.strip()

        disk_total = None
        view = self.service.view
        if view is not None and view.totals.disk_total:
            disk_total = view.totals.disk_total
        filters = text("filters")
        if filters:
            self.service.check_filter(filters)
        return PruneOptions(
            all=self.query_one("#all", Checkbox).value,
            filters=(filters,) if filters else (),
            keep_duration=parse_duration(text("keep"), what="keep") if text("keep") else 0,
            reserved_space=self._parse_size(text("reserved"), disk_total, "reserved space"),
            max_used_space=self._parse_size(text("max-used"), disk_total, "max used space"),
            min_free_space=self._parse_size(text("min-free"), disk_total, "min free space"),
        )

    @staticmethod
    def _parse_size(value: str, disk_total: int | None, what: str) -> int:
        return parse_size(value, disk_total=disk_total, what=what) if value else 0

    def on_input_changed(self) -> None:
        if not self.running and not self.finished:
            self.plan = None
            self.query_one("#prune-button", Button).disabled = True

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        # Said in words too: on and off must not differ only by a small glyph.
        event.checkbox.label = ALL_ON if event.value else ALL_OFF
        self.on_input_changed()

    def on_input_submitted(self) -> None:
        self.action_preview()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "preview-button":
            self.action_preview()
        elif event.button.id == "prune-button":
            self.action_prune()
        else:
            self.action_close()

    # -- preview ------------------------------------------------------------------------------

    def action_preview(self) -> None:
        if self.running:
            return
        try:
            options = self.read_options()
        except CacheError as err:
            self._summary(Text(str(err), style="bold red"))
            return
        self.options = options
        self._summary(Text("Computing the dry run…", style="dim"))
        self._preview(options)

    @work(thread=True, exclusive=True, group="policy-preview", exit_on_error=False)
    def _preview(self, options: PruneOptions) -> None:
        try:
            plan = self.service.plan_policy(options)
        except CacheError as err:
            self.post_message(PolicyPlanFailed(str(err)))
            return
        self.post_message(PolicyPlanned(plan))

    def on_policy_plan_failed(self, message: PolicyPlanFailed) -> None:
        self._summary(Text(message.reason, style="bold red"))

    def on_policy_planned(self, message: PolicyPlanned) -> None:
        plan = message.plan
        self.plan = plan
        n = len(plan.rows)
        summary = Text.assemble(
            ("Dry run: ", "bold"),
            (records(n), "bold"),
            (" would be removed, freeing ", ""),
            (size(plan.freed), "bold green"),
            (". Press Prune to remove them." if n else ".", ""),
        )
        _kept(summary, plan, "Would keep")
        self._summary(summary)
        listing = Text(no_wrap=True, overflow="ellipsis")
        for row in plan.rows[:MAX_LISTED]:
            listing.append(f"{row.id}  {size(row.size):>10}  {escape(row.description) or '-'}\n")
        if n > MAX_LISTED:
            listing.append(f"… and {n - MAX_LISTED} more\n")
        listing.rstrip()
        self.query_one("#preview", Static).update(listing)
        self.query_one("#prune-button", Button).disabled = n == 0

    def _summary(self, text: Text) -> None:
        self.query_one("#summary", Static).update(text)

    # -- prune ----------------------------------------------------------------------------------

    def action_prune(self) -> None:
        if self.running or self.plan is None or self.options is None or not self.plan.rows:
            return
        if self.service.read_only:
            self.app.notify("read-only: prune is off", severity="warning")
            return
        self.running = True
        for widget_id in ("#prune-button", "#preview-button"):
            self.query_one(widget_id, Button).disabled = True
        bar = self.query_one("#progress", ProgressBar)
        bar.display = True
        bar.update(total=len(self.plan.rows), progress=0)
        self._summary(Text("Pruning…", style="bold"))
        self._prune(self.options)

    @work(thread=True, exclusive=True, group="policy-prune", exit_on_error=False)
    def _prune(self, options: PruneOptions) -> None:
        def progress(row: PlanRow) -> None:
            self.post_message(PolicyPruneProgress(row))
            if self._cancel.is_set():
                # The core stops choosing records; batches already tombstoned still go.
                raise _Cancelled

        try:
            result = self.service.prune_policy(options, on_prune=progress)
        except PruneInterrupted as stopped:
            # Batches already under way were finished: count what really went.
            went = tuple(plan_row(info) for info in stopped.removed)
            kept = "".join(f"; kept {rid}: {why}" for rid, why in stopped.refusals)
            self.post_message(PolicyPruneEnded(None, f"cancelled{kept}", went))
            return
        except CacheError as err:
            self.post_message(PolicyPruneEnded(None, str(err)))
            return
        self.post_message(PolicyPruneEnded(result))

    def on_policy_prune_progress(self, message: PolicyPruneProgress) -> None:
        self._advance(message.row)

    def _advance(self, row: PlanRow) -> None:
        self.done.append(row)
        self.query_one("#progress", ProgressBar).advance(1)

    def on_policy_prune_ended(self, message: PolicyPruneEnded) -> None:
        # Posted after every progress message of the run, so handled after them too.
        if message.went is not None:
            self.done = list(message.went)
        self._finish(message.result, message.error)

    def _finish(self, result: PrunePlan | None, error: str | None) -> None:
        self.running = False
        self.finished = True
        self.query_one("#close", Button).focus()
        if result is not None:
            self.freed = result.freed
            bar = self.query_one("#progress", ProgressBar)
            bar.update(total=max(len(result.rows), 1), progress=max(len(result.rows), 1))
            n = len(result.rows)
            summary = Text.assemble(
                ("Done: ", "bold"),
                (f"removed {records(n)}, freed ", ""),
                (size(result.freed), "bold green"),
                (".", ""),
            )
            _kept(summary, result)
            self._summary(summary)
        else:
            self.freed = sum(r.size for r in self.done if not r.shared)
            n = len(self.done)
            self._summary(
                Text.assemble(
                    (f"Prune stopped ({error}): ", "bold red"),
                    (f"removed {records(n)}, freed ", ""),
                    (size(self.freed), "bold"),
                    (".", ""),
                )
            )

    def action_gc_list(self) -> None:
        """The whole GC list tier by tier (the same preview as ``g`` on the main screen)."""
        from cachetui.screens.gcpreview import GCPreviewScreen

        self.app.push_screen(GCPreviewScreen(self.service))

    def action_close(self) -> None:
        if self.running:
            if not self._cancel.is_set():
                self._cancel.set()
                self._summary(Text("Stopping after the current batch…", style="bold yellow"))
            return
        self.dismiss(self.freed)
