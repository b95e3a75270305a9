"""The ref tree: a ``Tree`` keyed by record id, patched in place on every change.

Children are added only when a node is first expanded (100,000 records open fast), the
``id -> TreeNode`` map lets a change relabel one row, and the cursor, the expansion and
the marks follow record ids, never line numbers.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Tree
from textual.widgets._tree import TOGGLE_STYLE, TreeNode

from cachetui.service import Delta, RecordView, StoreView
from cachetui.widgets.format import Columns, format_row

__all__ = ["SORT_KEYS", "RefTree"]

SORT_KEYS = ("size", "last used", "name")


def _sort_key(kind: str) -> Callable[[RecordView], tuple]:
    if kind == "last used":
        return lambda r: (r.last_used_at is None, -(r.last_used_at or 0.0), r.id)
    if kind == "name":
        return lambda r: ((r.description or "~").lower(), r.id)
    return lambda r: (-r.size, r.id)


def _with_ancestors(matches: frozenset[str], view: StoreView) -> frozenset[str]:
    """What a filter shows: the matching records and every ancestor of one."""
    shown = set(matches)
    for record_id in matches:
        shown.update(view.ancestors(record_id))
    return frozenset(shown)


class RefTree(Tree[str]):
    """The records, parents above their children."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "app.toggle_mark", "Mark", show=True),
        Binding("shift+space", "toggle_expand_all", "Expand all", show=False),
        Binding("right", "expand_node", "Expand", show=False),
        Binding("left", "collapse_node", "Collapse", show=False),
    ]

    def __init__(self, marks: set[str], now: Callable[[], float], **kwargs: object) -> None:
        super().__init__("records", **kwargs)  # type: ignore[arg-type]
        self.show_root = False
        self.guide_depth = 4
        self.auto_expand = True
        self.marks = marks
        self.now = now
        self.view: StoreView | None = None
        self.sort = "size"
        self.shown: frozenset[str] | None = None  # None: no filter
        self.matches: frozenset[str] | None = None
        self.columns = Columns()
        self.nodes: dict[str, TreeNode[str]] = {}
        self._populated: set[str | None] = set()
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
        row = self.view.rows[record_id]
        return format_row(
            row,
            depth=self._depth(record_id),
            marked=record_id in self.marks,
            now=self.now(),
            columns=self.columns,
            dim=self.matches is not None and record_id not in self.matches,
        )

    def _visible_children(self, parent: str | None) -> list[str]:
        assert self.view is not None
        ids = self.view.child_ids(parent)
        if self.shown is not None:
            ids = tuple(i for i in ids if i in self.shown)
        key = _sort_key(self.sort)
        rows = self.view.rows
        return sorted(ids, key=lambda i: key(rows[i]))

    def _has_visible_children(self, record_id: str) -> bool:
        assert self.view is not None
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

    def on_resize(self) -> None:
        columns = Columns.for_width(self.size.width)
        if columns != self.columns:
            self.columns = columns
            self.guide_depth = columns.guide
            self._invalidate()

    # -- building ---------------------------------------------------------------------------

    def show(self, view: StoreView) -> None:
        """(Re)build from a view, keeping the expanded records and the cursor."""
        expanded = {rid for rid, node in self.nodes.items() if node.is_expanded}
        cursor = self.cursor_id
        self.view = view
        self.clear()
        self.nodes.clear()
        self._populated.clear()
        self._populate(None)
        self._restore(expanded, cursor)

    def _restore(self, expanded: Iterable[str], cursor: str | None) -> None:
        assert self.view is not None
        for record_id in sorted(expanded, key=lambda i: len(self.view.ancestors(i))):  # type: ignore[union-attr]
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
            for ancestor in reversed(self.view.ancestors(record_id)):
                self._populate(ancestor)
                node = self.nodes.get(ancestor)
                if node is None:
                    return False
                node.expand()
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

    def set_sort(self, kind: str) -> None:
        self.sort = kind
        if self.view is not None:
            self.show(self.view)

    def set_filter(self, matches: frozenset[str] | None) -> None:
        """Show only matching records and their ancestors (dimmed); None shows all."""
        self.matches = matches
        if matches is None or self.view is None:
            self.shown = None
        else:
            self.shown = _with_ancestors(matches, self.view)
        if self.view is not None:
            self.show(self.view)
            if matches:
                first = self._visible_children(None)
                if first and self.cursor_id is None:
                    self.select_id(first[0])

    def relabel(self, ids: Iterable[str]) -> None:
        """Redraw these records' rows (their labels are built from the current view)."""
        if self.view is None:
            return
        for record_id in list(ids):
            node = self.nodes.get(record_id)
            if node is not None and record_id in self.view.rows:
                node.allow_expand = self._has_visible_children(record_id)
                node.refresh()

    # -- live updates ---------------------------------------------------------------------

    def apply_delta(self, delta: Delta, matches: frozenset[str] | None = None) -> None:
        """Patch the tree in place: relabel changed rows, insert added ones, drop removed."""
        cursor = self.cursor_id
        cursor_line = self.cursor_line
        old = self.view
        self.view = delta.view
        view = delta.view
        if self.matches is not None and matches is not None:
            self.matches = matches
            shown = _with_ancestors(matches, view)
            if shown != self.shown:  # records entered or left the filter
                self.shown = shown
                self.marks.difference_update(delta.removed)
                self.show(view)
                return
        for record_id in (*delta.removed, *delta.reparented):
            node = self.nodes.get(record_id)
            if node is not None:
                self._forget(node)
                node.remove()
        touched_parents: set[str] = set()
        key = _sort_key(self.sort)
        for record_id in (*delta.added, *delta.reparented):
            row = view.rows.get(record_id)
            if row is None or (self.shown is not None and record_id not in self.shown):
                continue
            if row.parent is not None:
                touched_parents.add(row.parent)
            if row.parent not in self._populated:
                continue
            parent = self._node_of(row.parent)
            if parent is None or record_id in self.nodes:
                continue
            keys = [
                key(view.rows[c.data])
                for c in parent.children
                if c.data is not None and c.data in view.rows
            ]
            self._add(parent, record_id, before=bisect.bisect_left(keys, key(row)))
        for record_id in delta.removed:
            if old is not None and record_id in old.rows:
                old_parent = old.rows[record_id].parent
                if old_parent is not None:
                    touched_parents.add(old_parent)
        self.marks.difference_update(delta.removed)
        self.relabel({*delta.changed, *touched_parents})
        if cursor is not None and cursor in self.nodes:
            self.select_id(cursor, expand=False)
        elif cursor is not None:
            _ = self._tree_lines
            last = max(self.last_line, 0)
            self.cursor_line = min(max(cursor_line, 0), last)

    # -- actions ---------------------------------------------------------------------------

    def _on_tree_node_expanded(self, event: Tree.NodeExpanded[str]) -> None:
        self._populate(event.node.data)

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
