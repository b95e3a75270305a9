"""The dashboard's app-level messages, posted from worker and feed threads.

``post_message`` is thread-safe: the change feed, the liveness ticker and the workers
post these, and the app handles them on the UI thread.
"""

from __future__ import annotations

from textual.message import Message

from cachetui.core import ChangeSet

__all__ = ["FeedStatus", "StoreChanged"]


class StoreChanged(Message):
    """Records or metadata changed (from the change feed, or after our own action).

    ``own`` marks a change the dashboard made itself: it is shown even while paused.
    """

    def __init__(self, changes: ChangeSet, *, own: bool = False) -> None:
        super().__init__()
        self.changes = changes
        self.own = own


class FeedStatus(Message):
    """The file watcher stopped (``reason``), or runs again (``reason`` is None)."""

    def __init__(self, reason: str | None) -> None:
        super().__init__()
        self.reason = reason
