"""The help screen (``?``): every key, grouped."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["KEYS", "HelpScreen"]

KEYS: tuple[tuple[str, str, str, bool], ...] = (
    # (section, key, what it does, changes the store)
    ("Move", "↑ ↓ / j k", "move the cursor", False),
    ("Move", "→ l / ←", "expand, collapse (or go to the parent)", False),
    ("Move", "enter", "expand or collapse", False),
    ("Move", "e", "expand or collapse everything below", False),
    ("Sort", "s", "by subtree size (the record and all below it)", False),
    ("Sort", "S", "by own size", False),
    ("Sort", "M", "by last use (newest first)", False),
    ("Sort", "C", "by usage count (most used first)", False),
    ("Sort", "n", "by name (description, A to Z)", False),
    ("Sort", "", "the same key again reverses the order", False),
    ("View", "/", "search words in ids and descriptions (go build); esc clears", False),
    ("View", "", "or filter: = ! ~ , or a key alone make a filter (label.team==infra)", False),
    ("View", "i", "show or hide the details pane", False),
    ("View", "P", "pause or resume others' changes (your own always show)", False),
    ("View", "r", "reload everything now", False),
    ("View", "g", "the GC list tier by tier; why the selected record stays", False),
    ("Act", "space", "mark or unmark the record for deletion", True),
    ("Act", "x", "mark (or unmark) the record with its whole chain below it", True),
    ("Act", "L", "set (team=infra) or remove (team-) labels on the record", True),
    ("Act", "d", "prune the marked records (or the selected one), after a confirmation", True),
    ("Act", "p", "prune by policy: dry run first, then prune", True),
    ("Act", "c", "commit the selected free mutable record", True),
    ("Act", "h", "hold (pin) the selected record against prune", True),
    ("Act", "u", "release the dashboard's hold; force-release another process's", True),
    ("App", "ctrl+p", "command palette", False),
    ("App", "?", "this help", False),
    ("App", "q", "quit", False),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def __init__(self, read_only: bool = False) -> None:
        super().__init__()
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
        table.add_column(style="bold")
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        section = ""
        for name, key, what, writes in KEYS:
            if writes and self.read_only:
                continue
            table.add_row(name if name != section else "", key, what)
            section = name
        with VerticalScroll(classes="dialog", id="help"):
            title = "cachetui keys" + (" (read-only: actions are off)" if self.read_only else "")
            yield Static(title, classes="title")
            yield Static(table)
            with Vertical(classes="footer"):
                yield Static("↑ ↓ PgUp PgDn scroll   esc / ? closes", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#help").focus()  # the arrows and page keys scroll a long list

    async def action_dismiss(self, result: object = None) -> None:
        self.dismiss(None)
