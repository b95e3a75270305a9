"""The GC list, tier by tier (``g``), and "why is this record still here?".

Shows, for the record selected in the tree, which tier would take it or what keeps it
from every tier; then, for the whole list (BuildKit's default list for this disk, or a
policy file typed in), each tier in order: what it would remove, the total after it,
and how many records stay for which reason; and the last GC runs recorded in the store.
Everything comes from one dry run in the core (``CacheService.plan_gc``); this screen
only lays it out. Nothing is removed here.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from cachetui.core import CacheError, RecordState
from cachetui.gcreport import KEPT_ORDER, describe_policy, render_kept
from cachetui.service import CacheService, GCPreview
from cachetui.widgets.format import ago, records, size

__all__ = ["GCPreviewScreen", "render_tiers", "render_why"]


def render_tiers(preview: GCPreview) -> Text:
    """Each tier: its policy, what it would remove, the total after it, who stays why."""
    text = Text()
    for tier in preview.result.tiers:
        text.append(f"Tier {tier.index + 1}  ", style="bold")
        text.append(describe_policy(tier.policy, size) + "\n")
        n = len(tier.removed)
        text.append("   would remove ")
        text.append(records(n), style="bold red" if n else "")
        text.append(f" ({size(tier.removed_bytes)})  ·  total after ")
        text.append(size(tier.total_after), style="bold")
        if tier.limit is not None:
            text.append(f" (limit {size(max(tier.limit, 0))})", style="dim")
        text.append("\n")
        counts = Counter(reason.kind for reason in tier.kept.values())
        if counts:
            order = sorted(counts, key=lambda k: KEPT_ORDER.index(k) if k in KEPT_ORDER else 99)
            text.append(
                "   stay: " + ", ".join(f"{counts[k]} {k}" for k in order) + "\n",
                style="dim",
            )
    if not preview.result.tiers:
        text.append("The list has no tiers: GC removes nothing.\n")
    text.append("\nLast runs\n", style="bold")
    if not preview.runs:
        text.append("   none recorded in this store yet\n", style="dim")
    for run in preview.runs:
        when = datetime.fromtimestamp(run.started_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        stopped = ", stopped" if run.interrupted else ""
        text.append(
            f"   {when}  {run.trigger}: removed {records(run.records)} "
            f"({size(run.bytes)}) in {run.duration:.1f}s{stopped}\n"
        )
    text.rstrip()
    return text


def render_why(
    preview: GCPreview, record_id: str | None, now: float, record: RecordState | None = None
) -> Text:
    """For one record: the reason each tier keeps it, up to the tier that takes it; with
    its ``record`` value, its effective age when a use below it is newer than its own."""
    text = Text()
    if record_id is None:
        text.append("Select a record in the tree to see why it is still here.", style="dim")
        return text
    verdicts = preview.result.fate(record_id)
    text.append("Why is ", style="bold")
    text.append(record_id, style="bold cyan")
    text.append(" still here?\n", style="bold")
    if not verdicts:
        text.append("   It is not in the store any more.", style="dim")
        return text
    for index, reason in verdicts:
        tier = preview.result.tiers[index]
        text.append(f"   Tier {index + 1}: ")
        if reason is None:
            text.append("would remove it", style="bold red")
            text.append(f" (total after: {size(tier.total_after)})\n")
        else:
            text.append(render_kept(reason, now, tier, size) + "\n")
    if verdicts[-1][1] is not None:
        text.append("   No tier removes it.\n", style="bold green")
    if record is not None and record.effective_by not in (None, record.id):
        assert record.effective_at is not None
        text.append("   Effective age: ", style="bold")
        text.append(ago(record.effective_at, now), style="bold")
        text.append(
            f" (the newest use below it, {record.effective_by}). A keep duration looks at "
            f"its own last use ({ago(record.last_used_at, now)}), but a parent stays as "
            "long as anything below it stays.\n"
        )
    text.rstrip()
    return text


class GCPreviewScreen(ModalScreen[None]):
    """The whole GC list as a dry run, and the selected record's fate."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    class Planned(Message, bubble=False):
        """The worker's dry run of the GC list, tier by tier."""

        def __init__(self, preview: GCPreview) -> None:
            super().__init__()
            self.preview = preview

    class PlanFailed(Message, bubble=False):
        """The GC list (a policy file) was refused; ``reason`` says why."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def __init__(self, service: CacheService, selected: str | None = None) -> None:
        super().__init__()
        self.service = service
        self.selected = selected
        self.preview: GCPreview | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="gc-preview"):
            yield Static("GC list, tier by tier (dry run)", classes="title", id="gc-title")
            with Horizontal(id="gc-source"):
                yield Input(
                    placeholder="policy file (empty: BuildKit's default list for this disk)",
                    id="gc-policy",
                )
                yield Button("Load", id="gc-load")
            # One scroll for both: at 80x24 the record's own answer comes first.
            with VerticalScroll(id="gc-body"):
                yield Static("", id="gc-why")
                yield Static("Computing the dry run…", id="gc-tiers")
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()
        self._load(None)

    def on_input_submitted(self) -> None:
        self.action_load()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "gc-load":
            self.action_load()
        else:
            self.action_close()

    def action_load(self) -> None:
        path = self.query_one("#gc-policy", Input).value.strip()
        self.query_one("#gc-tiers", Static).update(Text("Computing the dry run…", style="dim"))
        self._load(path or None)

    @work(thread=True, exclusive=True, group="gc-preview", exit_on_error=False)
    def _load(self, path: str | None) -> None:
        try:
            preview = self.service.plan_gc(path)
        except CacheError as err:
            self.post_message(self.PlanFailed(str(err)))
            return
        self.post_message(self.Planned(preview))

    def on_gcpreview_screen_plan_failed(self, message: PlanFailed) -> None:
        self.query_one("#gc-tiers", Static).update(Text(message.reason, style="bold red"))

    def on_gcpreview_screen_planned(self, message: Planned) -> None:
        preview = message.preview
        self.preview = preview
        self.query_one("#gc-title", Static).update(f"GC list (dry run): {preview.policy.source}")
        self.query_one("#gc-tiers", Static).update(render_tiers(preview))
        view = self.service.view
        record = view.rows.get(self.selected) if view and self.selected else None
        self.query_one("#gc-why", Static).update(
            render_why(preview, self.selected, self.service.now(), record)
        )

    def action_close(self) -> None:
        self.dismiss(None)
