"""The label dialog (``L``): set or remove ``key=value`` labels on the selected record.

What is typed follows ``kubectl label``: ``team=infra`` sets a label, ``team-`` removes
it, several are separated by spaces. The dialog only parses the words; the core checks
the keys and values (``CacheManager.set_labels``) and its refusal is shown here, in the
dialog, so nothing typed is lost. Dismissed with the labels as they are now, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from cachetui.core import CacheError
from cachetui.messages import LabelsRefused, LabelsSet
from cachetui.widgets.format import escape

__all__ = ["LabelScreen", "parse_label_words"]

SetLabels = Callable[[str, dict[str, str | None]], dict[str, str]]


def parse_label_words(text: str) -> dict[str, str | None]:
    """``team=infra tier-`` -> ``{"team": "infra", "tier": None}`` (None removes).

    Raises ``ValueError`` naming a word that is neither ``key=value`` nor ``key-``.
    """
    changes: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if eq and key:
            changes[key] = value
        elif not eq and word.endswith("-") and len(word) > 1:
            changes[word[:-1]] = None
        else:
            raise ValueError(f"{word!r}: write key=value to set a label, key- to remove it")
    if not changes:
        raise ValueError("nothing to do: write key=value to set a label, key- to remove it")
    return changes


class LabelScreen(ModalScreen[dict[str, str] | None]):
    """Shows a record's labels and takes ``key=value`` / ``key-`` words."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, record_id: str, labels: tuple[tuple[str, str], ...], set_labels: SetLabels
    ) -> None:
        super().__init__()
        self.record_id = record_id
        self.labels = labels
        self.set_labels = set_labels

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="labels"):
            yield Static(
                Text.assemble(("Labels of ", "bold"), (self.record_id, "bold")),
                classes="title",
            )
            now = ", ".join(f"{k}={v}" for k, v in self.labels) or "none"
            yield Static(Text.assemble(("now: ", "dim"), escape(now)), id="labels-now")
            yield Input(placeholder="team=infra (sets)  tier- (removes)", id="label-input")
            yield Static("", id="label-error")
            with Vertical(classes="footer"):
                yield Static("enter: apply   esc: cancel", classes="hint")
                with Horizontal(classes="buttons"):
                    yield Button("Cancel", id="cancel", compact=True)
                    yield Button("Apply", id="apply", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#label-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self.action_apply()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_apply(self) -> None:
        text = self.query_one("#label-input", Input).value
        try:
            changes = parse_label_words(text)
        except ValueError as err:
            self._error(str(err))
            return
        self._apply(changes)

    @work(thread=True, exclusive=True, group="labels", exit_on_error=False)
    def _apply(self, changes: dict[str, str | None]) -> None:
        try:
            now = self.set_labels(self.record_id, changes)
        except CacheError as err:
            self.post_message(LabelsRefused(str(err)))
            return
        self.post_message(LabelsSet(now))

    def on_labels_refused(self, message: LabelsRefused) -> None:
        self._error(message.reason)

    def on_labels_set(self, message: LabelsSet) -> None:
        self.dismiss(message.labels)

    def _error(self, message: str) -> None:
        self.query_one("#label-error", Static).update(Text(message, style="bold red"))
