"""Confirmation dialogs: prune the marked records, force-release another process's hold.

Both are ``ModalScreen[bool]`` with "No" focused; ``y``/``n``/``esc`` work too.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from cachetui.core import HolderInfo
from cachetui.views import PrunePlan
from cachetui.widgets.format import ago, escape, records, size

__all__ = ["ConfirmPruneScreen", "ForceReleaseScreen"]

MAX_LISTED = 200


class _YesNo(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "answer(False)", "No"),
        Binding("y", "answer(True)", "Yes"),
        Binding("left,right,tab", "app.focus_next", show=False),
    ]

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def _footer(self, hint: str, yes: str) -> ComposeResult:
        """The hint and the buttons, docked so they stay visible on a small terminal."""
        with Vertical(classes="footer"):
            yield Static(hint, classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("No", id="no", variant="primary", compact=True)
                yield Button(yes, id="yes", variant="error", compact=True)


class ConfirmPruneScreen(_YesNo):
    """Lists the records, and the bytes that will actually be freed."""

    def __init__(self, plan: PrunePlan) -> None:
        super().__init__()
        self.plan = plan

    def compose(self) -> ComposeResult:
        plan = self.plan
        with Vertical(classes="dialog", id="confirm-prune"):
            n = len(plan.rows)
            # A fleet's keys are "HOST/ID": say which hosts the request goes to.
            hosts = sorted({r.id.partition("/")[0] for r in plan.rows if "/" in r.id})
            where = f" on {'host' if len(hosts) == 1 else 'hosts'} {', '.join(hosts)}"
            if plan.chains:
                yield Static(self._chain_title(plan), classes="title")
            else:
                yield Static(
                    Text.assemble(
                        ("Prune ", "bold"),
                        (records(n), "bold"),
                        (where if hosts else "", "bold"),
                        ("? This frees ", ""),
                        (size(plan.freed), "bold green"),
                        (" (parents that stay are not counted).", ""),
                    ),
                    classes="title",
                )
            listing = Text(no_wrap=True, overflow="ellipsis")
            for row in plan.rows[:MAX_LISTED]:
                listing.append(f"{row.id}  ", style="bold")
                listing.append(f"{size(row.size):>10}  ")
                listing.append(("shared " if row.shared else "") + (escape(row.description) or "-"))
                listing.append("\n")
            if len(plan.rows) > MAX_LISTED:
                listing.append(f"… and {len(plan.rows) - MAX_LISTED} more\n")
            for record_id, reason in plan.refused:
                listing.append(f"{record_id}  kept: {reason}\n", style="dark_orange")
            for record_id in plan.gone:
                listing.append(f"{record_id}  already gone (removed meanwhile)\n", style="dim")
            listing.rstrip()
            with VerticalScroll(classes="listing"):
                yield Static(listing)
            yield from self._footer("y: prune   n / esc: cancel", "Yes, prune")

    @staticmethod
    def _chain_title(plan: PrunePlan) -> Text:
        """A whole chain: whose, how many records, leaves first, the bytes really freed."""
        tops = plan.chains
        whose = f"the chain of {tops[0]}" if len(tops) == 1 else f"{len(tops)} chains"
        text = Text.assemble(
            ("Prune ", "bold"),
            (whose, "bold"),
            (f": {records(len(plan.rows))}, leaves first? This frees ", ""),
            (size(plan.freed), "bold green"),
        )
        if plan.shared_bytes:
            text.append(f" ({size(plan.shared_bytes)} of shared records goes but frees nothing)")
        text.append(".")
        return text


class ForceReleaseScreen(_YesNo):
    """Names the holding processes; a live one needs a second confirmation."""

    def __init__(self, record_id: str, holders: tuple[HolderInfo, ...], now: float) -> None:
        super().__init__()
        self.record_id = record_id
        self.holders = holders
        self.now = now
        self.confirmations = 0

    @property
    def alive(self) -> bool:
        return any(h.alive for h in self.holders)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="force-release"):
            yield Static(
                Text.assemble(("Force-release ", "bold"), (self.record_id, "bold")),
                classes="title",
            )
            body = Text()
            for h in self.holders:
                state = "still running" if h.alive else "exited"
                body.append(
                    f"held by pid {h.pid} on {h.host} since {ago(h.since, self.now)} ({state})\n"
                )
            body.rstrip()
            yield Static(body)
            yield Static("", id="warning")
            yield from self._footer("y: release   n / esc: cancel", "Yes, release")

    def action_answer(self, answer: bool) -> None:
        if not answer:
            self.dismiss(False)
            return
        self.confirmations += 1
        if self.alive and self.confirmations < 2:
            pids = ", ".join(str(h.pid) for h in self.holders if h.alive)
            self.query_one("#warning", Static).update(
                Text(
                    f"Process {pids} is still running and may be using this record. "
                    "Confirm again to release it anyway.",
                    style="bold red",
                )
            )
            self.query_one("#no", Button).focus()
            return
        self.dismiss(True)
