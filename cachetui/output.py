"""Rendering disk usage, prune reports and doctor findings for the command line.

Pure functions: they take ``UsageInfo`` rows (or ``Finding``s, or ``Totals``) and the
current time, and return text. Nothing here does I/O or imports Textual.

Formats follow ``docker buildx du`` / ``docker buildx prune`` (see
``docs/cli.md``): sizes with go-units ``HumanSize``, last access as "<duration> ago", a ``*`` after
the ID of a mutable record and after the size of a shared one. On top of buildx, the
table spells the marks out in a ``FLAGS`` column and shows the record ``TYPE``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from cachetui.core import UNKNOWN_TIME, Finding, PruneOptions, Totals, UsageInfo
from cachetui.units import format_bytes_buildx, format_duration_ago

__all__ = [
    "DU_HEADER",
    "PRUNE_HEADER",
    "differs",
    "finding_json",
    "flags",
    "format_table",
    "go_time",
    "last_accessed",
    "prune_header",
    "prune_row",
    "render_du_table",
    "render_findings",
    "render_totals",
    "render_verbose",
    "rfc3339",
    "usage_json",
    "usage_json_line",
]

DU_HEADER = ("ID", "RECLAIMABLE", "SIZE", "LAST ACCESSED", "TYPE", "FLAGS")
PRUNE_HEADER = ("ID", "RECLAIMABLE", "SIZE", "LAST ACCESSED")
_PADDING = 3  # the docker CLI formatter's tabwriter padding
_PRUNE_WIDTHS = (26, 11, 9)  # buildx prune: %-40s\t%-5v\t%-10s\t%s, fitted to our ids


def escape(text: str) -> str:
    r"""``text`` safe to print on one line of a terminal or a log.

    Names come from users and from the disk (a directory called ``a\nb``, bytes that
    are not UTF-8): printed raw, a newline starts a fake output line, an escape sequence
    drives the terminal, and a lone surrogate makes ``print`` raise. Printable text is
    returned unchanged (backslashes included, so descriptions read as written); anything
    else becomes a backslash escape: ``\n``, ``\t``, ``\r``, ``\xNN`` (an undecodable
    byte shows as the byte it was), ``\uNNNN``.
    """
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
            continue
        code = ord(ch)
        if ch in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for a byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


_CONTROL_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def rfc3339(moment: datetime | None) -> str | None:
    """``2026-11-28T01:02:03Z`` (UTC, whole seconds), or None (also for a stored time
    that is not one: ``UNKNOWN_TIME``)."""
    if moment is None or moment == UNKNOWN_TIME:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_time(moment: datetime | None) -> str:
    """Go's default ``time.Time`` string in UTC: ``2026-11-28 01:02:03.5 +0000 UTC``."""
    if moment is None:
        return ""
    if moment == UNKNOWN_TIME:
        return "unknown"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + " +0000 UTC"


def last_accessed(info: UsageInfo, now: float) -> str:
    """buildx's LAST ACCESSED cell: "3 days ago", or empty if never used."""
    if info.last_used_at is None:
        return ""
    if info.last_used_at == UNKNOWN_TIME:
        return "unknown"
    return format_duration_ago(now - info.last_used_at.timestamp()) + " ago"


def flags(info: UsageInfo) -> str:
    """The marks buildx shows as ``*``, in words: "mutable", "shared", "in use", and a
    health that is not ok ("missing": its layer is gone; "broken": an ancestor's is), so
    a 0 B row whose bytes are gone never reads as an empty layer."""
    words = []
    if info.health != "ok":
        words.append(info.health)
    if info.mutable:
        words.append("mutable")
    if info.shared:
        words.append("shared")
    if info.in_use:
        words.append("in use")
    return ", ".join(words)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _id_cell(info: UsageInfo) -> str:
    return info.id + ("*" if info.mutable else "")


def _size_cell(info: UsageInfo) -> str:
    return format_bytes_buildx(info.size) + ("*" if info.shared else "")


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell plus three spaces; no trailing spaces."""
    all_rows = [list(header), *[list(row) for row in rows]]
    widths = [0] * len(header)
    for row in all_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in all_rows:
        cells = [cell.ljust(widths[i] + _PADDING) for i, cell in enumerate(row[:-1])]
        lines.append(("".join(cells) + row[-1]).rstrip())
    return lines


def _apparent_cell(info: UsageInfo) -> str:
    return format_bytes_buildx(info.apparent_size) if info.apparent_size >= 0 else ""


def differs(info: UsageInfo) -> bool:
    """Whether the apparent size reads differently from the size (sparse or small files)."""
    return info.apparent_size >= 0 and _apparent_cell(info) != format_bytes_buildx(info.size)


def render_du_table(rows: Sequence[UsageInfo], now: float) -> list[str]:
    """``cachetui du``'s table: header and one line per record.

    An ``APPARENT`` column (the files' lengths, as ``du --apparent-size``) follows
    buildx's four columns when any record's apparent size differs from its size.
    """
    apparent = any(differs(info) for info in rows)
    header = DU_HEADER[:4] + (("APPARENT",) if apparent else ()) + DU_HEADER[4:]
    return format_table(
        header,
        (
            (
                _id_cell(info),
                _bool(info.reclaimable),
                _size_cell(info),
                last_accessed(info, now),
                *((_apparent_cell(info),) if apparent else ()),
                info.record_type,
                flags(info),
            )
            for info in rows
        ),
    )


def prune_header() -> str:
    """The prune table header, in the fixed widths of ``prune_row``."""
    return _fixed(PRUNE_HEADER)


def prune_row(info: UsageInfo, now: float) -> str:
    """One streamed prune line (fixed widths, so it can be printed before the next)."""
    return _fixed(
        (_id_cell(info), _bool(info.reclaimable), _size_cell(info), last_accessed(info, now))
    )


def _fixed(cells: Sequence[str]) -> str:
    parts = [
        cell.ljust(width + _PADDING) for cell, width in zip(cells, _PRUNE_WIDTHS, strict=False)
    ]
    return ("".join(parts) + cells[-1]).rstrip()


def render_totals(summary: Totals) -> list[str]:
    """The totals block: Shared/Private (only if anything is shared), Reclaimable, Total,
    and the free space of the disk holding the store."""
    items: list[tuple[str, str]] = []
    if summary.shared > 0:
        items.append(("Shared:", format_bytes_buildx(summary.shared)))
        items.append(("Private:", format_bytes_buildx(summary.private)))
    items.append(("Reclaimable:", format_bytes_buildx(summary.reclaimable)))
    items.append(("Total:", format_bytes_buildx(summary.total)))
    if summary.disk_total:
        items.append(
            (
                "Disk free:",
                f"{format_bytes_buildx(summary.disk_free)} of "
                f"{format_bytes_buildx(summary.disk_total)}",
            )
        )
    width = max(len(label) for label, _ in items) + 1
    return [f"{label.ljust(width)}{value}" for label, value in items]


def render_verbose(info: UsageInfo, now: float) -> list[str]:
    """One buildx "pretty" block (without the blank line that separates blocks)."""
    items: list[tuple[str, str]] = [("ID:", info.id)]
    lines_after_parents: list[str] = []
    if info.parents:
        lines_after_parents = [f" - {parent}" for parent in info.parents]
    rest: list[tuple[str, str]] = [
        ("Created at:", go_time(info.created_at)),
        ("Mutable:", _bool(info.mutable)),
        ("Reclaimable:", _bool(info.reclaimable)),
        ("Shared:", _bool(info.shared)),
        ("Size:", format_bytes_buildx(info.size)),
    ]

    if info.description:
        rest.append(("Description:", escape(info.description)))
    rest.append(("Usage count:", str(info.usage_count)))
    if info.last_used_at is not None:
        rest.append(("Last used:", last_accessed(info, now)))
    if info.record_type:
        rest.append(("Type:", info.record_type))
    # Past buildx's fields, so that its order stays a prefix of ours.
    if differs(info):
        rest.append(("Apparent size:", format_bytes_buildx(info.apparent_size)))
    if info.cache_mount is not None:
        rest.append(("Cache id:", escape(info.cache_mount.cache_id)))
        if info.cache_mount.target:
            rest.append(("Target:", escape(info.cache_mount.target)))
        rest.append(("Sharing:", str(info.cache_mount.sharing)))
    labels = [f" - {escape(key)}={escape(value)}" for key, value in info.labels]
    width = max(len("Description:"), *(len(label) for label, _ in rest)) + 1
    lines = [f"{label.ljust(width)}{value}" for label, value in items]
    if lines_after_parents:
        lines.append("Parents:")
        lines.extend(lines_after_parents)
    lines.extend(f"{label.ljust(width)}{value}" for label, value in rest)
    if labels:
        lines.append("Labels:")
        lines.extend(labels)
    return lines


def usage_json(info: UsageInfo) -> dict[str, Any]:
    """The JSON object of one record (its fields are listed in ``docs/cli.md``)."""
    return {
        "id": info.id,
        "parents": list(info.parents),
        "created_at": rfc3339(info.created_at),
        "last_used_at": rfc3339(info.last_used_at),
        "mutable": info.mutable,
        "in_use": info.in_use,
        "reclaimable": info.reclaimable,
        "shared": info.shared,
        "size": int(info.size),
        "description": info.description,
        "usage_count": int(info.usage_count),
        "record_type": info.record_type,
        "health": info.health,
        "apparent_size": int(info.apparent_size) if info.apparent_size >= 0 else None,
        "labels": dict(info.labels),
        "cache_mount": None
        if info.cache_mount is None
        else {
            "cache_id": info.cache_mount.cache_id,
            "target": info.cache_mount.target,
            "sharing": str(info.cache_mount.sharing),
        },
    }


def usage_json_line(info: UsageInfo) -> str:
    line = json.dumps(usage_json(info), ensure_ascii=False, separators=(", ", ": "))
    if not line.isprintable():
        # Only a lone surrogate (or another unprintable that JSON leaves raw) gets here:
        # escape everything, so the line can be printed and parsed.
        line = json.dumps(usage_json(info), ensure_ascii=True, separators=(", ", ": "))
    return line


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "kind": finding.kind,
        "subject": finding.subject,
        "message": finding.message,
        "fixed": bool(finding.fixed),
    }


def render_findings(findings: Sequence[Finding]) -> list[str]:
    """``cachetui doctor``'s table, or "store is clean"."""
    if not findings:
        return ["store is clean"]
    return format_table(
        ("KIND", "SUBJECT", "FIXED", "MESSAGE"),
        (
            (f.kind, escape(f.subject), "yes" if f.fixed else "no", escape(f.message))
            for f in findings
        ),
    )


def _limit_reason(policy: PruneOptions, total: int, free: int | None) -> str:
    """Which option set the space limit (BuildKit's ``calculateKeepBytes``), in words."""
    options: list[tuple[str, int]] = []
    if policy.max_used_space:
        options.append(("--max-used-space", policy.max_used_space))
    if policy.min_free_space:
        excess = policy.min_free_space - (free or 0)
        if excess > 0:
            options.append(
                (
                    f"--min-free-space (the disk has {format_bytes_buildx(free or 0)} free, "
                    f"{format_bytes_buildx(excess)} too little)",
                    total - excess,
                )
            )
        elif not policy.max_used_space:
            options.append(("the disk already has --min-free-space free: nothing to remove", total))
    if not options:
        return "--reserved-space alone is a cap, as in buildx"
    name, value = min(options, key=lambda option: option[1])
    if policy.reserved_space > value:
        return f"{name} allows less, but --reserved-space keeps at least this much"
    return name


def explain_space_limit(
    policy: PruneOptions,
    *,
    total: int,
    keep: int,
    free: int | None,
    removed: Sequence[UsageInfo],
) -> list[str]:
    """Why a space-limited dry run frees what it frees: the limit the core computed, which
    option set it, and, when the last record removed freed more than was left to free,
    that the order is by last use and not by size."""
    size = format_bytes_buildx
    keep = max(keep, 0)  # more to free than the cache holds: everything may go
    lines = [
        f"Limit:\tkeep at most {size(keep)} of {size(total)} "
        f"({_limit_reason(policy, total, free)})",
        "\trecords go least recently and least frequently used first, one at a time, "
        f"until at most {size(keep)} remain",
    ]
    remaining = total
    for info in removed:
        if info.shared:
            continue  # a shared record's bytes stay counted (another user keeps them)
        before, remaining = remaining, remaining - info.size
        if remaining <= keep:
            left = before - keep
            if info.size > left:
                lines.append(
                    f"\tthe last one, {info.id} ({size(info.size)}), is larger than the "
                    f"{size(left)} that was left to free: the order is by use, "
                    "not by size"
                )
            return lines
    if remaining > keep:
        lines.append(
            f"\tnothing else may go (in use, has children, or kept by the options): "
            f"{size(remaining)} remain"
        )
    return lines
