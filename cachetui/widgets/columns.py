"""The tree's columns: what each shows, how wide it is, and which go first when narrow.

A row is the mark, the id (narrower when deeper, so every fixed column starts at the
same x at every depth), the fixed columns in ``COLUMNS`` order, and the description,
which takes whatever width is left. ``Layout.for_width`` fits the columns to a terminal
width: it narrows and drops columns in the order their ``narrow_rank``/``drop_rank``
say until the description keeps a readable width, then gives spare width to the id and
the description.

A new column is one ``ColumnSpec`` passed to ``add_column``: its cell is drawn from a
``RowContext`` (the record's value, the view it belongs to, the clock), so it can show
anything the view knows (the subtree totals, a label, a cache mount).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.text import Text

from cachetui.core import RecordState
from cachetui.views import StoreView, state_words
from cachetui.widgets.format import STATE_STYLES, ago, size

if TYPE_CHECKING:
    from cachetui.widgets.sorting import Sort

__all__ = [
    "COLUMNS",
    "ColumnSpec",
    "Layout",
    "RowContext",
    "add_column",
    "cell",
    "share_bar",
]

ICON = 2  # the expand icon (leaves get two spaces)
MARK = 2  # "✓ " or two spaces
DESC_GAP = 2  # spaces before the description
MIN_DESC = 14  # columns narrow and drop until the description has this much (or width/7)
MAX_NAME = 27  # the id column never takes more (a full id is in the details pane)


@dataclass(frozen=True, slots=True)
class RowContext:
    """What a cell may draw from: the record's value, its view and the clock."""

    row: RecordState
    view: StoreView
    now: float
    pinned: bool = False
    pending: str | None = None
    dim: bool = False


CellRender = Callable[[RowContext, int], Text]


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One fixed column."""

    key: str
    title: str
    width: int
    render: CellRender  # (context, width) -> the cell's text (cut or padded by the layout)
    right: bool = False  # right-aligned (numbers)
    narrow: int = 0  # a smaller width it can live with (0: none)
    narrow_rank: int = 100  # lower narrows earlier when space is short
    drop_rank: int | None = None  # lower drops earlier; None: never dropped
    sort: str | None = None  # the sort whose arrow this column's title carries
    wide_only: bool = False  # shown only from ``WIDE`` columns on (the type column)
    min_width: int = 0  # shown only on a tree at least this wide (0: any width)


def cell(text: str, width: int, *, right: bool = False) -> str:
    """``text`` cut with an ellipsis or padded to ``width``."""
    if len(text) > width:
        text = text[: max(width - 1, 0)] + "…" if width > 1 else text[:width]
    return text.rjust(width) if right else text.ljust(width)


# -- the built-in cells ----------------------------------------------------------------------

_BLOCKS = " ▏▎▍▌▋▊▉█"


def share_bar(fraction: float, width: int) -> str:
    """A bar of ``width`` cells filled to ``fraction`` in eighths of a cell."""
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_BLOCKS[part] if part and full < width else "")
    return bar.ljust(width)


def percent(fraction: float) -> str:
    """``52.3%``; ``<0.1%`` for a sliver that is not nothing."""
    if 0 < fraction < 0.001:
        return "<0.1%"
    return f"{fraction * 100:.1f}%"


def _size(ctx: RowContext, width: int) -> Text:
    return Text(size(ctx.row.size), style="" if ctx.dim else "bold")


def _subtree(ctx: RowContext, width: int) -> Text:
    subtree = ctx.view.subtree_size(ctx.row.id)
    style = "dim" if ctx.dim else ("bold" if ctx.view.subtree_count(ctx.row.id) > 1 else "")
    return Text(size(subtree), style=style)


#: Below this width the share column shows the percent only.
BAR_MIN = 11


def _share(ctx: RowContext, width: int) -> Text:
    total = ctx.view.totals.total
    fraction = ctx.view.subtree_size(ctx.row.id) / total if total > 0 else 0.0
    pct = percent(fraction).rjust(6 if width >= 6 else width)
    if width < BAR_MIN:
        return Text(pct, style="dim" if ctx.dim else "")
    text = Text(share_bar(fraction, width - 7), style="dim" if ctx.dim else "cyan")
    text.append(" ")
    text.append(pct)
    return text


def _items(ctx: RowContext, width: int) -> Text:
    count = ctx.view.subtree_count(ctx.row.id)
    return Text(str(count), style="dim" if count <= 1 else "")


def _state(ctx: RowContext, width: int) -> Text:
    states = state_words(ctx.row, ctx.pinned) + (("requested",) if ctx.pending else ())
    text = Text()
    for i, word in enumerate(states):
        if i:
            text.append(" ")
        text.append(word, style=STATE_STYLES.get(word, ""))
    if not states:
        text.append("free", style="dim")
    return text


def _type(ctx: RowContext, width: int) -> Text:
    return Text(ctx.row.record_type, style="dim")


def _last(ctx: RowContext, width: int) -> Text:
    return Text(ago(ctx.row.last_used_at, ctx.now))


def _uses(ctx: RowContext, width: int) -> Text:
    return Text(str(ctx.row.usage_count))


def _apparent(ctx: RowContext, width: int) -> Text:
    """The files' lengths, only where they read differently from the disk usage (sparse
    files, many small files), as ncdu and gdu show both."""
    apparent = ctx.row.apparent_size
    if apparent < 0 or size(apparent) == size(ctx.row.size):
        return Text("")
    return Text(size(apparent), style="dim")


def _cache(ctx: RowContext, width: int) -> Text:
    """A cache mount's id and sharing mode: three ``/root/.m2`` mounts are told apart by
    their ids, and a ``locked`` one explains why a second build waits."""
    mount = ctx.row.cache_mount
    if mount is None:
        return Text("")
    text = Text(mount.cache_id)
    if mount.sharing != "shared":
        text.append(f" ({mount.sharing})", style="dim")
    return text


def _labels(ctx: RowContext, width: int) -> Text:
    return Text(",".join(f"{key}={value}" for key, value in ctx.row.labels), style="dim")


#: The fixed columns, in screen order. When space is short: the state narrows, the type
#: goes, the share loses its bar, then the item count, the usage count, the share and
#: last use go; the sizes and the state stay at any width.
COLUMNS: list[ColumnSpec] = [
    ColumnSpec("size", "SIZE", 8, _size, right=True, sort="size"),
    ColumnSpec(
        "subtree", "SUBTREE", 9, _subtree, right=True, sort="subtree", narrow=8, narrow_rank=35
    ),
    ColumnSpec("share", "SHARE", 12, _share, narrow=6, narrow_rank=20, drop_rank=40),
    ColumnSpec("items", "ITEMS", 5, _items, right=True, drop_rank=21),
    ColumnSpec("state", "STATE", 18, _state, narrow=15, narrow_rank=10),
    ColumnSpec("type", "TYPE", 12, _type, drop_rank=15, wide_only=True),
    ColumnSpec(
        "last", "LAST USED", 14, _last, sort="last used", narrow=11, narrow_rank=30, drop_rank=50
    ),
    ColumnSpec("uses", "USES", 5, _uses, right=True, sort="uses", drop_rank=30),
    # What tells records apart beyond their sizes: shown on a tree wide enough to keep
    # the description readable beside them, and always in the details pane.
    ColumnSpec("apparent", "APPARENT", 8, _apparent, right=True, drop_rank=12, min_width=150),
    ColumnSpec("cache", "CACHE MOUNT", 18, _cache, drop_rank=11, min_width=150),
    ColumnSpec("labels", "LABELS", 18, _labels, drop_rank=10, min_width=150),
]

#: From this width on, every column keeps its full width (the type column shows).
WIDE = 118


def add_column(spec: ColumnSpec, *, after: str | None = None) -> None:
    """Add a column (after the column ``after``, else last); a second one with the same
    key replaces the first."""
    for i, existing in enumerate(COLUMNS):
        if existing.key == spec.key:
            COLUMNS[i] = spec
            return
    index = len(COLUMNS)
    if after is not None:
        for i, existing in enumerate(COLUMNS):
            if existing.key == after:
                index = i + 1
    COLUMNS.insert(index, spec)


@dataclass(frozen=True, slots=True)
class Layout:
    """The columns shown at one width, and their widths.

    ``name`` is the id column's width at depth 0, wide enough for the deepest line to
    keep ``min_id`` cells of id after ``guide`` cells per level.
    """

    columns: tuple[tuple[ColumnSpec, int], ...] = field(default_factory=tuple)
    name: int = 14
    guide: int = 4
    min_id: int = 12

    @classmethod
    def for_width(cls, width: int, depth: int = 0, specs: list[ColumnSpec] | None = None) -> Layout:
        """The layout for a tree ``width`` cells wide whose deepest shown line is at
        ``depth`` (the id column must hold its guides and ``min_id`` cells of id)."""
        specs = list(COLUMNS if specs is None else specs)
        if width >= WIDE:
            name, guide, min_id = 14, 4, 12
        elif width >= 96:
            name, guide, min_id = 12, 3, 10
        else:
            name, guide, min_id = 10, 2, 8
        name = max(name, guide * depth + min_id)
        shown = [s for s in specs if (not s.wide_only or width >= WIDE) and width >= s.min_width]
        widths = {s.key: s.width for s in shown}

        def fixed() -> int:
            return ICON + MARK + name + sum(widths[s.key] + 1 for s in shown) + DESC_GAP

        steps: list[tuple[int, int, ColumnSpec]] = []
        for s in shown:
            if s.narrow and s.narrow < s.width:
                steps.append((s.narrow_rank, 0, s))
            if s.drop_rank is not None:
                steps.append((s.drop_rank, 1, s))
        steps.sort(key=lambda step: (step[0], step[1]))
        min_desc = max(MIN_DESC, width // 7)
        for _rank, drop, spec in steps:
            if width - fixed() >= min_desc:
                break
            if spec not in shown:
                continue
            if drop:
                shown.remove(spec)
                del widths[spec.key]
            else:
                widths[spec.key] = spec.narrow
        spare = width - fixed() - (min_desc + 8)  # longer ids get some of what is left
        name = max(name, min(name + spare, MAX_NAME))
        return cls(tuple((s, widths[s.key]) for s in shown), name, guide, min_id)

    def has(self, key: str) -> bool:
        return any(spec.key == key for spec, _ in self.columns)

    def width_of(self, key: str) -> int:
        for spec, width in self.columns:
            if spec.key == key:
                return width
        return 0

    def id_width(self, depth: int) -> int:
        """The id cell's width at ``depth`` (the guides take the rest of the region)."""
        return max(self.name - self.guide * depth, self.min_id)

    def header(self, sort: Sort | None = None) -> Text:
        """The column titles; the sorted column carries the direction's arrow (the
        description's title carries the name sort's)."""
        parts = [" " * (ICON + MARK), cell("ID", self.name)]
        for spec, width in self.columns:
            title = spec.title
            if sort is not None and spec.sort == sort.kind:
                gap = " " if len(title) + 2 <= width else ""  # a narrow column: "▼USES"
                title = f"{sort.arrow}{gap}{title}" if spec.right else f"{title}{gap}{sort.arrow}"
            parts += [" ", cell(title, width, right=spec.right)]
        desc = "DESCRIPTION"
        if sort is not None and sort.kind == "name":
            desc += f" {sort.arrow}"
        parts += [" " * DESC_GAP, desc]
        return Text("".join(parts), style="bold")
