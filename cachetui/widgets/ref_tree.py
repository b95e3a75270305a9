"""The ref tree: a ``Tree`` keyed by record id, patched in place on every change.

Children are added only when a node is first expanded (100,000 records open fast), the
``id -> TreeNode`` map lets a change relabel one row, and the cursor, the expansion and
the marks follow record ids, never line numbers. The tree owns the marks: a mark on a
record that went away is dropped and reported (``RefTree.Vanished``). A row whose size
changes moves to its place among its siblings, so the sort stays true.

The fixed columns start at the same x at every depth: the id column is as wide as the
deepest line shown needs (its guides plus a readable minimum of the id).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Tree
from textual.widgets._tree import TOGGLE_STYLE, TreeNode

from cachetui.fleet_views import FleetView
from cachetui.views import Delta, StoreView
from cachetui.widgets.columns import Layout
from cachetui.widgets.rows import format_row, format_store_row
from cachetui.widgets.sorting import Sort, SortKey, sort_key

__all__ = ["RefTree", "shown_for"]


def shown_for(matches: frozenset[str], view: StoreView) -> frozenset[str]:
    """What a filter shows: the matching records and every ancestor of one (a worker
    computes it with the matches: 100,000 matches take a while)."""
    shown = set(matches)
    for record_id in matches:
        shown.update(view.ancestors(record_id))
    return frozenset(shown)


class RefTree(Tree[str]):
    """The records, parents above their children."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_mark", "Mark", show=True),
        Binding("e", "toggle_expand_all", "Expand all", show=False),
        Binding("shift+space", "toggle_expand_all", "Expand all", show=False),
        Binding("right,l", "expand_node", "Expand", show=False),
        Binding("left", "collapse_node", "Collapse", show=False),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    class Vanished(Message):
        """Records under the cursor or marked went away (removed by someone else)."""

        def __init__(self, cursor: str | None, marks: tuple[str, ...]) -> None:
            super().__init__()
            self.cursor = cursor
            self.marks = marks

    class MarkRequested(Message):
        """The mark key was pressed on the record under the cursor (the screen decides
        whether it may be marked: the core's refusal, read-only mode)."""

    class MarksChanged(Message):
        """Records were marked or unmarked (the totals show what the marks free)."""

    class ColumnsChanged(Message):
        """The column widths changed (the header must follow)."""

    class SortChanged(Message):
        """The sort changed (the header's arrow and the totals bar must follow)."""

    class RecordsWanted(Message):
        """A fleet's store row was opened before its records were read."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, now: Callable[[], float], **kwargs: object) -> None:
        super().__init__("records", **kwargs)  # type: ignore[arg-type]
        self.show_root = False
        self.guide_depth = 4
        self.auto_expand = True
        self.marks: set[str] = set()
        self.now = now
        self.view: StoreView | None = None
        self.sort = Sort()
        self.shown: frozenset[str] | None = None  # None: no filter
        self.matches: frozenset[str] | None = None
        self.columns = Layout.for_width(160)
        self.max_depth = 0
        self.nodes: dict[str, TreeNode[str]] = {}
        self._populated: set[str | None] = set()
        self._before_filter: tuple[set[str], str | None] | None = None
        self._bulk = False

    # -- helpers ------------------------------------------------------------------------

    @property
    def cursor_id(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None and node.data else None

    def _depth(self, record_id: str) -> int:
        assert self.view is not None
        return len(self.view.ancestors(record_id))

    def label_for(self, record_id: str) -> Text:
        assert self.view is not None
        view = self.view
        dim = self.matches is not None and record_id not in self.matches
        if isinstance(view, FleetView):
            store = view.stores.get(record_id)
            if store is not None:
                return format_store_row(
                    store,
                    now=self.now(),
                    layout=self.columns,
                    fleet_total=view.totals.total,
                    stale=view.stale_since,
                    dim=dim,
                )
        row = view.rows[record_id]
        return format_row(
            row,
            view=view,
            depth=self._depth(record_id),
            marked=record_id in self.marks,
            pinned=record_id in view.pinned,
            now=self.now(),
            layout=self.columns,
            dim=dim,
            pending=view.pending.get(record_id) if isinstance(view, FleetView) else None,
        )

    def _visible_children(self, parent: str | None) -> list[str]:
        assert self.view is not None
        ids = self.view.child_ids(parent)
        if self.shown is not None:
            ids = tuple(i for i in ids if i in self.shown)
        return sorted(ids, key=sort_key(self.sort, self.view))

    def _has_visible_children(self, record_id: str) -> bool:
        assert self.view is not None
        if isinstance(self.view, FleetView) and record_id in self.view.unloaded:
            return self.shown is None or record_id in self.shown  # read when opened
        ids = self.view.child_ids(record_id)
        if self.shown is None:
            return bool(ids)
        return any(i in self.shown for i in ids)

    def _node_of(self, record_id: str | None) -> TreeNode[str] | None:
        return self.root if record_id is None else self.nodes.get(record_id)

    def _add(self, parent: TreeNode[str], record_id: str, before: int | None = None) -> None:
        # The label is built when the line is drawn (render_label): adding 10,000 nodes
        # costs no formatting, and a change only needs the node refreshed.
        node = parent.add(
            Text(record_id),
            data=record_id,
            allow_expand=self._has_visible_children(record_id),
            before=before,
        )
        self.nodes[record_id] = node

    def _populate(self, parent_id: str | None) -> None:
        node = self._node_of(parent_id)
        if node is None or parent_id in self._populated:
            return
        self._populated.add(parent_id)
        self._add_record_nodes(node, self._visible_children(parent_id))

    def _add_record_nodes(self, parent: TreeNode[str], ids: list[str]) -> None:
        """Append many children with one invalidation.

        ``TreeNode.add`` invalidates the whole tree and queues a redraw of the new node
        each time: 10,000 top-level records cost seconds on the UI thread that way. The
        lines are rebuilt once here instead, which draws every new node anyway.
        """
        if not ids:
            return
        self._bulk = True
        try:
            for record_id in ids:
                node = self._add_node(parent, Text(record_id), record_id)
                node._allow_expand = self._has_visible_children(record_id)
                parent._children.append(node)
                self.nodes[record_id] = node
        finally:
            self._bulk = False
        parent._updates += 1
        self._invalidate()

    def call_later(self, callback: Callable[..., object], *args: object, **kwargs: object) -> bool:
        # A new TreeNode queues a redraw of itself; during _add_record_nodes the single
        # invalidation that follows redraws them all.
        if getattr(self, "_bulk", False) and callback == self._refresh_node:
            return True
        return super().call_later(callback, *args, **kwargs)

    def process_label(self, label: str | Text) -> Text:
        # Tree splits every label into lines (twice per node); ours are one-line ids.
        if isinstance(label, Text) and "\n" not in label.plain:
            return label
        return super().process_label(label)

    def _forget(self, node: TreeNode[str]) -> None:
        stack = [node]
        while stack:
            current = stack.pop()
            if current.data:
                self.nodes.pop(current.data, None)
                self._populated.discard(current.data)
            stack.extend(current.children)

    def expanded_ids(self) -> set[str]:
        return {rid for rid, node in self.nodes.items() if node.is_expanded}

    # -- rendering ------------------------------------------------------------------------

    def render_label(self, node: TreeNode[str], base_style: Style, style: Style) -> Text:
        view = getattr(self, "view", None)  # render_label runs inside Tree.__init__
        if node.data and view is not None and node.data in view.rows:
            label = self.label_for(node.data)
        else:
            label = node._label.copy()
        label.stylize(style)
        if node._allow_expand:
            icon = self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE
            prefix = (icon, base_style + TOGGLE_STYLE)
        else:
            prefix = ("  ", base_style)
        return Text.assemble(prefix, label)

    def get_label_width(self, node: TreeNode[str]) -> int:
        # Tree measures every line to size its virtual width; measuring would format all
        # 10,000 labels. The columns are fixed-width and overflow-x is hidden.
        return 160

    def _build(self) -> None:
        super()._build()
        if not hasattr(self, "max_depth"):  # _build runs inside Tree.__init__
            return
        lines = self._tree_lines_cached or []
        depth = max((len(line.path) - 1 for line in lines), default=0)
        if depth != self.max_depth:
            self.max_depth = depth
            self._set_columns()

    def _set_columns(self) -> None:
        layout = Layout.for_width(self.size.width or 160, self.max_depth)
        if layout != self.columns:
            self.columns = layout
            self._line_cache.clear()  # the rendered strips, not the tree's lines
            self.refresh()
            self.post_message(self.ColumnsChanged())

    def on_resize(self) -> None:
        before = self.columns
        self._set_columns()
        if self.columns != before:
            self.guide_depth = self.columns.guide
            self._invalidate()

    # -- building ---------------------------------------------------------------------------

    def show(self, view: StoreView) -> None:
        """(Re)build from a view, keeping the expanded records and the cursor."""
        expanded = self.expanded_ids()
        cursor = self.cursor_id
        self.view = view
        self.clear()
        self.nodes.clear()
        self._populated.clear()
        self._populate(None)
        self._restore(expanded, cursor)

    def _restore(self, expanded: Iterable[str], cursor: str | None) -> None:
        assert self.view is not None
        view = self.view
        for record_id in sorted(expanded, key=lambda i: len(view.ancestors(i))):
            node = self.nodes.get(record_id)
            if node is not None:
                self._populate(record_id)
                node.expand()
        if cursor is not None:
            self.select_id(cursor, expand=False)

    def select_id(self, record_id: str, *, expand: bool = True) -> bool:
        """Move the cursor to a record (expanding its ancestors when ``expand``)."""
        if self.view is None or record_id not in self.view.rows:
            return False
        if record_id not in self.nodes:
            if not expand:
                return False
            self._reveal(record_id)
        node = self.nodes.get(record_id)
        if node is None:
            return False
        parent = node.parent
        while parent is not None and not parent.is_root:
            if not parent.is_expanded:
                if not expand:
                    break
                parent.expand()
            parent = parent.parent
        _ = self._tree_lines  # rebuild the line numbers before moving
        self.move_cursor(node)
        return True

    def _reveal(self, record_id: str) -> None:
        """Add and expand the ancestors of a record, top down."""
        assert self.view is not None
        for ancestor in reversed(self.view.ancestors(record_id)):
            self._populate(ancestor)
            node = self.nodes.get(ancestor)
            if node is None:
                return
            node.expand()
        self._populate(self.view.parent_of(record_id))

    def set_sort(self, sort: Sort) -> None:
        """Sort every level by ``sort`` (the cursor and the expansion stay)."""
        self.sort = sort
        if self.view is not None:
            self.show(self.view)
        self.post_message(self.SortChanged())

    def action_sort_by(self, kind: str) -> None:
        """A sort key: that sort, or the same one reversed when it is already on."""
        self.set_sort(self.sort.pressed(kind))

    def set_filter(
        self, matches: frozenset[str] | None, shown: frozenset[str] | None = None
    ) -> None:
        """Show only matching records, with their ancestors (dimmed) as context, every
        match revealed; None shows all again, with the expansion from before the filter.
        ``shown`` is ``shown_for(matches, view)`` when the caller has it already."""
        was_filtered = self.matches is not None
        if matches is not None and not was_filtered:
            self._before_filter = (self.expanded_ids(), self.cursor_id)
        self.matches = matches
        if self.view is None:
            self.shown = None if matches is None else frozenset(matches)
            return
        cursor = self.cursor_id
        if matches is None:
            self.shown = None
            saved, saved_cursor = self._before_filter or (set(), None)
            self._before_filter = None
            self.show(self.view)
            self._restore(saved, None)
            target = cursor if cursor is not None else saved_cursor
            if target is not None:
                self.select_id(target)
            return
        self.shown = shown if shown is not None else shown_for(matches, self.view)
        self.clear()
        self.nodes.clear()
        self._populated.clear()
        self._populate(None)
        for record_id in sorted(matches, key=self._depth):
            self._reveal(record_id)
        if cursor is not None and cursor in matches:
            self.select_id(cursor)
        else:
            first = self._first_match()
            if first is not None:
                self.select_id(first)

    def _first_match(self) -> str | None:
        _ = self._tree_lines
        for line in self._tree_lines:
            record_id = line.node.data
            if record_id and self.matches is not None and record_id in self.matches:
                return record_id
        return None

    def relabel(self, ids: Iterable[str]) -> None:
        """Redraw these records' rows (their labels are built from the current view)."""
        if self.view is None:
            return
        for record_id in list(ids):
            node = self.nodes.get(record_id)
            if node is not None and record_id in self.view.rows:
                node.allow_expand = self._has_visible_children(record_id)
                node.refresh()

    # -- marks ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_mark":  # the screen knows whether marking is on
            return self.screen.check_action(action, parameters)
        return True

    def action_toggle_mark(self) -> None:
        self.post_message(self.MarkRequested())

    def toggle_mark(self, record_id: str) -> bool:
        """Mark or unmark; returns whether it is marked now."""
        if record_id in self.marks:
            self.marks.discard(record_id)
        else:
            self.marks.add(record_id)
        self.relabel([record_id])
        self.post_message(self.MarksChanged())
        return record_id in self.marks

    def add_marks(self, ids: Iterable[str]) -> None:
        """Mark these records (a whole chain at once)."""
        added = set(ids) - self.marks
        if added:
            self.marks.update(added)
            self.relabel(added)
            self.post_message(self.MarksChanged())

    def drop_marks(self, ids: Iterable[str]) -> None:
        dropped = self.marks.intersection(ids)
        if dropped:
            self.marks.difference_update(dropped)
            self.relabel(dropped)
            self.post_message(self.MarksChanged())

    # -- live updates ---------------------------------------------------------------------

    def apply_delta(
        self,
        delta: Delta,
        matches: frozenset[str] | None = None,
        shown: frozenset[str] | None = None,
    ) -> None:
        """Patch the tree in place: relabel changed rows, insert added ones, drop removed,
        move rows whose sort key changed; the cursor and marks stay on their records.
        ``matches`` (and ``shown``, see ``set_filter``) re-match a filter."""
        cursor = self.cursor_id
        cursor_line = self.cursor_line
        old = self.view
        self.view = delta.view
        view = delta.view
        vanished_marks = tuple(sorted(m for m in self.marks if m not in view.rows))
        self.marks.difference_update(vanished_marks)
        vanished_cursor = cursor if cursor is not None and cursor not in view.rows else None
        if vanished_marks or vanished_cursor:
            self.post_message(self.Vanished(vanished_cursor, vanished_marks))
        if vanished_marks:
            self.post_message(self.MarksChanged())
        if self.matches is not None and matches is not None:
            self.matches = matches
            if shown is None:
                shown = shown_for(matches, view)
            if shown != self.shown:  # records entered or left the filter
                self.shown = shown
                self.show(view)
                for record_id in matches:
                    if record_id not in self.nodes:
                        self._reveal(record_id)
                self._after_vanish(vanished_cursor, old, cursor_line)
                return
        for record_id in (*delta.removed, *delta.reparented):
            node = self.nodes.get(record_id)
            if node is not None:
                self._forget(node)
                node.remove()
        touched_parents: set[str] = set()
        key = sort_key(self.sort, view)
        for record_id in (*delta.added, *delta.reparented):
            if record_id not in view.rows or (
                self.shown is not None and record_id not in self.shown
            ):
                continue
            parent_id = view.parent_of(record_id)
            if parent_id is not None:
                touched_parents.add(parent_id)
            self._insert(record_id, key)
        for record_id in (*delta.removed, *delta.reparented):
            if old is not None and record_id in old.rows:
                touched_parents.update(i for i in old.ancestors(record_id) if i in view.rows)
        # A record's size is in every ancestor's subtree total: they change with it.
        above: set[str] = set(touched_parents)
        for record_id in (*delta.changed, *delta.added, *delta.reparented):
            if record_id in view.rows:
                above.update(view.ancestors(record_id))
        moved = set(delta.changed)
        if self.sort.kind == "subtree":
            moved |= above
        self._reorder(moved, key)
        if old is not None and old.totals.total != view.totals.total and self.columns.has("share"):
            # every row's share of the store moved a little: redraw what is on screen
            self._line_cache.clear()
            self.refresh()
        self.relabel({*delta.changed, *above})
        if cursor is not None and cursor in self.nodes:
            self.select_id(cursor, expand=False)
        else:
            self._after_vanish(vanished_cursor, old, cursor_line)

    def _reorder(self, ids: Iterable[str], key: SortKey) -> None:
        """Put rows whose sort value changed back in their place: one moved row per
        parent by bisection, several siblings at once by sorting that parent again."""
        assert self.view is not None
        view = self.view
        by_parent: dict[str | None, list[str]] = {}
        for record_id in ids:
            node = self.nodes.get(record_id)
            if node is not None and node.parent is not None:
                by_parent.setdefault(node.parent.data, []).append(record_id)
        # deepest parents first, so a parent's place is decided after its children's
        for parent_id in sorted(
            by_parent, key=lambda i: -1 if i is None else len(view.ancestors(i)), reverse=True
        ):
            children = by_parent[parent_id]
            if len(children) == 1:
                self._reposition(children[0], key)
            else:
                self._resort(parent_id, key)

    def _insert(self, record_id: str, key: SortKey) -> None:
        assert self.view is not None
        view = self.view
        parent_id = view.parent_of(record_id)
        if parent_id not in self._populated:
            return
        parent = self._node_of(parent_id)
        if parent is None or record_id in self.nodes:
            return
        rows = view.rows
        siblings = [c for c in parent.children if c.data is not None and c.data in rows]
        index = bisect.bisect_left(siblings, key(record_id), key=lambda c: key(c.data or ""))
        before = None
        if index < len(siblings):
            before = parent.children.index(siblings[index])
        self._add(parent, record_id, before=before)

    def _reposition(self, record_id: str, key: SortKey) -> None:
        """Move a row whose sort key changed to its place among its siblings (its
        neighbours are compared first: most changes leave a row where it is)."""
        assert self.view is not None
        node = self.nodes.get(record_id)
        if node is None or node.parent is None:
            return
        view = self.view
        siblings = node.parent.children
        index = siblings.index(node)
        mine = key(record_id)
        before = siblings[index - 1].data if index > 0 else None
        after = siblings[index + 1].data if index + 1 < len(siblings) else None
        if (before is None or before not in view.rows or key(before) <= mine) and (
            after is None or after not in view.rows or mine <= key(after)
        ):
            return
        expanded = {
            rid
            for rid in self.expanded_ids()
            if rid == record_id or record_id in view.ancestors(rid)
        }
        cursor = self.cursor_id
        self._forget(node)
        node.remove()
        self._insert(record_id, key)
        self._restore(expanded, None)
        if cursor is not None and cursor not in self.nodes:
            self.select_id(cursor)

    def _resort(self, parent_id: str | None, key: SortKey) -> None:
        """Rebuild one parent's children in order when moving single rows was not enough
        (several siblings changed at once)."""
        assert self.view is not None
        parent = self._node_of(parent_id)
        if parent is None or parent_id not in self._populated:
            return
        view = self.view
        ids = [c.data for c in parent.children if c.data is not None and c.data in view.rows]
        keys = [key(i) for i in ids]
        if all(a <= b for a, b in itertools.pairwise(keys)):
            return
        expanded = self.expanded_ids()
        cursor = self.cursor_id
        for child in list(parent.children):
            self._forget(child)
            child.remove()
        self._populated.discard(parent_id)
        self._populate(parent_id)
        self._restore(expanded, None)
        if cursor is not None and cursor not in self.nodes:
            self.select_id(cursor)

    def _after_vanish(self, vanished: str | None, old: StoreView | None, line: int) -> None:
        """The record under the cursor went away: go to its nearest surviving ancestor
        (never silently to a neighbour, where the next key would act on another record)."""
        if vanished is None:
            return
        if old is not None:
            for ancestor in old.ancestors(vanished):
                if ancestor in self.nodes:
                    self.select_id(ancestor, expand=False)
                    return
        _ = self._tree_lines
        self.cursor_line = min(max(line, 0), max(self.last_line, 0))

    # -- actions ---------------------------------------------------------------------------

    def _on_tree_node_expanded(self, event: Tree.NodeExpanded[str]) -> None:
        self._populate(event.node.data)
        key = event.node.data
        if isinstance(self.view, FleetView) and key is not None and key in self.view.unloaded:
            self.post_message(self.RecordsWanted(key))

    def records_loaded(self, view: StoreView, key: str) -> None:
        """A store's records arrived: add them under its row in one go."""
        self.view = view
        node = self.nodes.get(key)
        if node is None:
            return
        for child in list(node.children):
            self._forget(child)
        node.remove_children()
        self._populated.discard(key)
        self._populate(key)
        node.allow_expand = self._has_visible_children(key)
        node.refresh()

    def action_toggle_expand_all(self) -> None:
        """Expand (adding children as needed) or collapse everything below the cursor."""
        node = self.cursor_node
        if node is None or not node.allow_expand:
            return
        if node.is_expanded:
            node.collapse_all()
            return
        stack = [node]
        while stack:
            current = stack.pop()
            self._populate(current.data)
            stack.extend(c for c in current.children if c.allow_expand)
        node.expand_all()

    def action_expand_node(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and not node.is_expanded:
            self._populate(node.data)
            node.expand()
        elif node.children:
            self.action_cursor_down()

    def action_collapse_node(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded:
            node.collapse()
        elif node.parent is not None and not node.parent.is_root:
            self.move_cursor(node.parent)
