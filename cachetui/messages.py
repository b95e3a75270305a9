"""The dashboard's typed messages: what the change feed and the workers report.

``post_message`` is thread-safe: the change feed, the liveness ticker and every worker
post one of these when their work is done, and a handler on the UI thread shows it.
Nothing a thread learns reaches the screen another way (no callbacks run from threads).
"""

from __future__ import annotations

from textual.message import Message

from cachetui.core import ChangeSet
from cachetui.views import Delta, DetailsView, PlanRow, PrunePlan, ReleaseResult, StoreView

__all__ = [
    "ActionFailed",
    "ChainPlanned",
    "Committed",
    "DetailsRead",
    "FeedStatus",
    "FilterMatched",
    "FilterRejected",
    "ForceReleased",
    "Held",
    "LabelsRefused",
    "LabelsSet",
    "LoadFailed",
    "Notice",
    "PolicyPlanFailed",
    "PolicyPlanned",
    "PolicyPruneEnded",
    "PolicyPruneProgress",
    "PrunePlanned",
    "Pruned",
    "RecordsRead",
    "ReleaseOffered",
    "Released",
    "StoreChanged",
    "StoreLoaded",
    "ViewRefreshed",
]


# -- the store and its live updates ---------------------------------------------------------


class StoreChanged(Message):
    """Records or metadata changed (from the change feed, or after our own action).

    ``own`` marks a change the dashboard made itself: it is shown even while paused.
    ``select`` names a record to put the cursor on once it is shown (a new commit).
    Changes queued behind one another fold into one (``can_replace``): a burst of writes
    costs one refresh, and no change is lost.
    """

    def __init__(self, changes: ChangeSet, *, own: bool = False, select: str | None = None) -> None:
        super().__init__()
        self.changes = changes
        self.own = own
        self.select = select

    def can_replace(self, message: Message) -> bool:
        # Textual drops this message for the next one queued when this returns True: the
        # next one takes over what this one carried.
        if not isinstance(message, StoreChanged):
            return False
        message.changes = self.changes.merge(message.changes)
        message.own = message.own or self.own
        message.select = message.select or self.select
        return True


class FeedStatus(Message):
    """The file watcher stopped (``reason``), or runs again (``reason`` is None)."""

    def __init__(self, reason: str | None) -> None:
        super().__init__()
        self.reason = reason


class StoreLoaded(Message):
    """The first read of the store: its view, and why its metadata is damaged (or None)."""

    def __init__(self, view: StoreView, damage: str | None) -> None:
        super().__init__()
        self.view = view
        self.damage = damage


class LoadFailed(Message):
    """The store could not be opened; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ViewRefreshed(Message):
    """A change folded into the view, with all the screen needs to show it in one go: the
    delta (None when reading failed), the filter's matches and what they show when the
    metadata changed under a filter, the details of the record under the cursor, and the
    record to select."""

    def __init__(
        self,
        delta: Delta | None,
        *,
        matches: frozenset[str] | None = None,
        shown: frozenset[str] | None = None,
        details: DetailsView | None = None,
        select: str | None = None,
    ) -> None:
        super().__init__()
        self.delta = delta
        self.matches = matches
        self.shown = shown
        self.details = details
        self.select = select


class RecordsRead(Message):
    """A fleet's store row was opened and its records read."""

    def __init__(self, key: str, delta: Delta) -> None:
        super().__init__()
        self.key = key
        self.delta = delta


class Notice(Message):
    """Something a background service wants said (a fleet agent's progress)."""

    def __init__(self, text: str, severity: str = "information") -> None:
        super().__init__()
        self.text = text
        self.severity = severity


# -- reads for the screen ---------------------------------------------------------------------


class DetailsRead(Message):
    """The details of the record under the cursor."""

    def __init__(self, details: DetailsView) -> None:
        super().__init__()
        self.details = details


class FilterMatched(Message):
    """What the filter ``text`` matches, and what it shows (the matches and their
    ancestors)."""

    def __init__(self, text: str, matches: frozenset[str], shown: frozenset[str]) -> None:
        super().__init__()
        self.text = text
        self.matches = matches
        self.shown = shown


class FilterRejected(Message):
    """The filter ``text`` does not parse: where, and why."""

    def __init__(self, text: str, position: int | None, reason: str) -> None:
        super().__init__()
        self.text = text
        self.position = position
        self.reason = reason


# -- results of the actions -------------------------------------------------------------------


class ActionFailed(Message):
    """A write flow's store call failed: ``title`` names the flow, ``reason`` says why."""

    def __init__(self, title: str, reason: str) -> None:
        super().__init__()
        self.title = title
        self.reason = reason


class PrunePlanned(Message):
    """The dry run of pruning the chosen records: confirm it, or say why nothing goes."""

    def __init__(self, plan: PrunePlan) -> None:
        super().__init__()
        self.plan = plan


class ChainPlanned(Message):
    """The core's plan for ``root`` with everything below it: mark it, or say what
    stops it."""

    def __init__(self, root: str, plan: PrunePlan) -> None:
        super().__init__()
        self.root = root
        self.plan = plan


class Pruned(Message):
    """What a confirmed prune removed, kept and found gone."""

    def __init__(self, result: PrunePlan) -> None:
        super().__init__()
        self.result = result


class Committed(Message):
    """A mutable record was committed as ``new_id``."""

    def __init__(self, record_id: str, new_id: str) -> None:
        super().__init__()
        self.record_id = record_id
        self.new_id = new_id


class Held(Message):
    """The dashboard now holds ``record_id`` (pinned against prune)."""

    def __init__(self, record_id: str) -> None:
        super().__init__()
        self.record_id = record_id


class Released(Message):
    """The dashboard's own hold on ``record_id`` was released."""

    def __init__(self, record_id: str) -> None:
        super().__init__()
        self.record_id = record_id


class ReleaseOffered(Message):
    """The dashboard does not hold the record: who does (to offer a force-release)."""

    def __init__(self, details: DetailsView) -> None:
        super().__init__()
        self.details = details


class ForceReleased(Message):
    """Other processes' holds were dropped (or some were left: the result says)."""

    def __init__(self, result: ReleaseResult) -> None:
        super().__init__()
        self.result = result


# -- the dialogs' own workers -------------------------------------------------------------
# Each is posted to the dialog that started the worker and handled there; none bubbles up
# to the App (a dialog's result is the dialog's business). The GC list's are declared on
# its screen (``GCPreviewScreen.Planned``): they carry the service's ``GCPreview``, and
# this module stays below the service.


class PolicyPlanned(Message, bubble=False):
    """The dry run of the policy typed in the prune-by-policy dialog."""

    def __init__(self, plan: PrunePlan) -> None:
        super().__init__()
        self.plan = plan


class PolicyPlanFailed(Message, bubble=False):
    """The dry run of the policy was refused; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class PolicyPruneProgress(Message, bubble=False):
    """One record of a running policy prune is gone."""

    def __init__(self, row: PlanRow) -> None:
        super().__init__()
        self.row = row


class PolicyPruneEnded(Message, bubble=False):
    """A policy prune ended: with its ``result`` when it ran to the end, else with the
    ``error`` that stopped it and, when it was stopped between batches, what really went
    (``went``; None when the core could not say, and the progress counted is kept)."""

    def __init__(
        self,
        result: PrunePlan | None,
        error: str | None = None,
        went: tuple[PlanRow, ...] | None = None,
    ) -> None:
        super().__init__()
        self.result = result
        self.error = error
        self.went = went


class LabelsSet(Message, bubble=False):
    """The core set the labels: the record's labels as they are now."""

    def __init__(self, labels: dict[str, str]) -> None:
        super().__init__()
        self.labels = labels


class LabelsRefused(Message, bubble=False):
    """The core refused the labels typed in; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason
