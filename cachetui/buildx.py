"""What ``docker buildx du`` / ``docker buildx prune`` users type, read the way they mean it.

This module owns the command line's compatibility with buildx's words:

* **filters**: ``--filter`` values are containerd selectors (``type==regular``, several
  flags OR-ed, ``,`` AND-ed) unless one of them is Docker-style (``type=regular``,
  ``until=24h``, ``label=team=infra``). Then all of them are read the Docker way:
  different keys AND-ed, a repeated ``key=value`` OR-ed, ``until``/``unused-for`` a
  duration (prune's keep duration, du's age limit), ``id=`` a substring. The
  translation itself is ``cachetui.gcpolicy.dockerfilter``, which GC policy files for
  ``daemon.json`` are meant to use too, so both read Docker's filters the same way;
* **--format**: ``table``, ``json``, ``pretty``, a Go-template-like ``{{.ID}}\\t{{.Size}}``
  (``\\t`` and ``\\n`` written literally are a tab and a newline, as in the docker CLI),
  or ``table <template>`` (with a header row and aligned columns);
* **JSON keys**: buildx's ``ID``, ``CreatedAt``, ... beside our snake_case ones.

Where buildx's meaning and ours differ, the error says what to write instead. Nothing
here does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachetui.core import FilterSyntaxError, InvalidError, UsageInfo
from cachetui.units import format_bytes_buildx, format_duration_ago

__all__ = [
    "FIELDS",
    "FORMAT_WORDS",
    "ReadFilters",
    "Template",
    "buildx_json",
    "check_format",
    "is_docker_style",
    "json_line",
    "parse_template",
    "read_filters",
    "render_template",
]

# -- filters ----------------------------------------------------------------------------

_SELECTOR_HEAD = re.compile(r"\s*([A-Za-z][\w./-]*)\s*(==|!=|~=|=)?")


@dataclass(frozen=True, slots=True)
class ReadFilters:
    """``--filter`` values read: containerd filter strings (OR-ed), and the duration a
    Docker-style ``until``/``unused-for`` gave (None when none did)."""

    filters: tuple[str, ...]
    until: float | None
    docker: bool


def is_docker_style(item: str) -> bool:
    """Whether one ``--filter`` value is Docker's ``key=value`` (a single ``=``)."""
    match = _SELECTOR_HEAD.match(item)
    return match is not None and match.group(2) == "="


def _label_item(item: str) -> str:
    """Docker's ``label=<key>[=<value>]`` as our ``label.<key>[=<value>]``."""
    match = re.fullmatch(r"\s*label\s*(!=|=)\s*([^=]+?)\s*(?:=(.*))?", item, re.S)
    if match is None:
        return item
    op, key, value = match.groups()
    if value is None:
        if op == "!=":
            raise InvalidError(
                f"invalid filter {item!r}: a filter cannot select records by a missing "
                f"label; select the others with label.{key} (or label.{key}!=<value>)"
            )
        return f"label.{key}"
    return f"label.{key}{op}{value}"


def read_filters(items: Sequence[str]) -> ReadFilters:
    """Read ``--filter`` values (see the module docstring).

    Raises:
        InvalidError: a Docker-style value that cannot be translated, or a containerd
            AND (``,``) among Docker-style values; the message says what to write.
    """
    texts = tuple(items)
    if not any(is_docker_style(item) for item in texts):
        return ReadFilters(texts, None, False)
    from cachetui.gcpolicy.dockerfilter import translate

    for item in texts:
        match = _SELECTOR_HEAD.match(item)
        if match is not None and match.group(2) == "=" and not item[match.end() :].strip():
            key = match.group(1)
            raise FilterSyntaxError(
                f"invalid filter {item!r} at position {match.start(2)}: missing value for "
                f"{key!r} after '=' (write {key}=<value>; a bare {key} tests presence)",
                filter_text=item,
                position=match.start(2),
            )
        if "," in item:
            raise InvalidError(
                f"invalid filter {item!r}: with Docker-style filters (key=value) give one "
                "selector per --filter (they are AND-ed); a ',' AND belongs to the "
                "containerd form (key==value,key2==value2)"
            )
    translated = translate([_label_item(item) for item in texts], what="--filter")
    until = translated.keep_duration if any(_is_until(i) for i in texts) else None
    return ReadFilters(translated.filters, until, True)


def _is_until(item: str) -> bool:
    match = _SELECTOR_HEAD.match(item)
    return match is not None and match.group(1) in ("until", "unused-for")


# -- templates --------------------------------------------------------------------------


def _ago(moment: datetime | None, now: float) -> str:
    if moment is None:
        return ""
    return format_duration_ago(now - moment.timestamp()) + " ago"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bool(value: bool) -> str:
    return "true" if value else "false"


_Getter = Callable[[UsageInfo, float, bool], str]

#: Template fields: buildx's (``.ID`` ... ``.Type``) and ours, with the table header.
FIELDS: dict[str, tuple[str, _Getter]] = {
    "ID": ("ID", lambda i, now, table: i.id + ("*" if table and i.mutable else "")),
    "Parents": ("PARENTS", lambda i, now, table: ", ".join(i.parents)),
    "CreatedAt": ("CREATED AT", lambda i, now, table: _when(i.created_at)),
    "Mutable": ("MUTABLE", lambda i, now, table: _bool(i.mutable)),
    "Reclaimable": ("RECLAIMABLE", lambda i, now, table: _bool(i.reclaimable)),
    "Shared": ("SHARED", lambda i, now, table: _bool(i.shared)),
    "Size": (
        "SIZE",
        lambda i, now, table: format_bytes_buildx(i.size) + ("*" if table and i.shared else ""),
    ),
    "Description": ("DESCRIPTION", lambda i, now, table: i.description),
    "UsageCount": ("USAGE COUNT", lambda i, now, table: str(i.usage_count)),
    "LastUsedAt": ("LAST ACCESSED", lambda i, now, table: _ago(i.last_used_at, now)),
    "Type": ("TYPE", lambda i, now, table: i.record_type),
    "InUse": ("IN USE", lambda i, now, table: _bool(i.in_use)),
    "ApparentSize": (
        "APPARENT",
        lambda i, now, table: format_bytes_buildx(i.apparent_size) if i.apparent_size >= 0 else "",
    ),
    "Labels": (
        "LABELS",
        lambda i, now, table: ",".join(f"{key}={value}" for key, value in i.labels),
    ),
    "CacheID": (
        "CACHE ID",
        lambda i, now, table: i.cache_mount.cache_id if i.cache_mount else "",
    ),
    "Target": ("TARGET", lambda i, now, table: i.cache_mount.target if i.cache_mount else ""),
    "Sharing": (
        "SHARING",
        lambda i, now, table: str(i.cache_mount.sharing) if i.cache_mount else "",
    ),
}
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_FIELD = re.compile(r"\s*(json\s+)?\.([A-Za-z]*)\s*")
_KNOWN = ", ".join(f".{name}" for name in FIELDS)


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed ``--format`` template: literal text and fields, maybe as a table."""

    parts: tuple[tuple[str, str | None, bool], ...]  # (literal, field or None, as json)
    table: bool

    def header(self) -> list[str]:
        return [FIELDS[field][0] for _, field, _ in self.parts if field]

    def render(self, info: UsageInfo, now: float) -> str:
        out: list[str] = []
        for literal, field, as_json in self.parts:
            out.append(literal)
            if field is None:
                continue
            if field == "":
                out.append(json.dumps(buildx_json(info), separators=(",", ":")))
                continue
            value = FIELDS[field][1](info, now, self.table)
            out.append(json.dumps(value) if as_json else value)
        return "".join(out)

    def cells(self, info: UsageInfo, now: float) -> list[str]:
        return [FIELDS[field][1](info, now, True) for _, field, _ in self.parts if field]


def parse_template(text: str) -> Template:
    """Parse ``{{.Field}}``, ``{{json .Field}}`` and ``{{json .}}`` with literal text
    between; ``table`` in front makes a table (literal text then only separates
    columns). Anything else is ``InvalidError`` listing the fields."""
    table = False
    body = text
    if body.startswith(("table ", "table\t")):
        table, body = True, body[len("table ") :]
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    parts: list[tuple[str, str | None, bool]] = []
    position = 0
    for match in _ACTION.finditer(body):
        literal = body[position : match.start()]
        position = match.end()
        field = _FIELD.fullmatch(match.group(1))
        if field is None or (field.group(2) == "" and not field.group(1)):
            raise InvalidError(
                f"invalid --format {text!r}: cannot read {match.group(0)!r}; write "
                f"{{{{.Field}}}} or {{{{json .Field}}}} with one of {_KNOWN} (or {{{{json .}}}})"
            )
        name = field.group(2)
        if name and name not in FIELDS:
            raise InvalidError(f"invalid --format {text!r}: no field .{name} (fields: {_KNOWN})")
        parts.append((literal, name, bool(field.group(1))))
    tail = body[position:]
    if "{{" in tail or "}}" in tail:
        raise InvalidError(f"invalid --format {text!r}: an unclosed '{{{{'")
    if tail:
        parts.append((tail, None, False))
    if not any(field is not None for _, field, _ in parts):
        raise InvalidError(
            f"invalid --format {text!r}: expected table, json, pretty or a template "
            f"such as '{{{{.ID}}}}\\t{{{{.Size}}}}' (fields: {_KNOWN})"
        )
    if table and any(field == "" for _, field, _ in parts):
        raise InvalidError(f"invalid --format {text!r}: {{{{json .}}}} cannot be a table column")
    return Template(tuple(parts), table)


# -- choosing the output ---------------------------------------------------------------

#: ``--format`` words that are not templates.
FORMAT_WORDS = ("table", "json", "pretty")


def check_format(text: str, *, verbose: bool) -> Template | None:
    """The template ``--format`` names (None for table, json and pretty); ``--verbose``
    is buildx's ``--format pretty`` and cannot be combined with another format."""
    if verbose and text not in ("table", "pretty"):
        raise InvalidError(
            f"--verbose is --format pretty: give one of them, not --verbose with --format {text!r}"
        )
    if text in FORMAT_WORDS:
        return None
    return parse_template(text)


def json_line(info: UsageInfo, keys: str) -> str:
    """One JSON line: our snake_case keys, or buildx's (``keys == "buildx"``)."""
    from cachetui import output

    if keys == "buildx":
        return json.dumps(buildx_json(info), ensure_ascii=False, separators=(", ", ": "))
    return output.usage_json_line(info)


def render_template(template: Template, rows: Sequence[UsageInfo], now: float) -> list[str]:
    """Rows through a template: aligned under a header for ``table ...``."""
    if template.table:
        from cachetui import output

        return output.format_table(template.header(), (template.cells(i, now) for i in rows))
    return [template.render(info, now) for info in rows]


# -- buildx JSON ------------------------------------------------------------------------


def _rfc3339nano(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def buildx_json(info: UsageInfo) -> dict[str, Any]:
    """One record with buildx's (and the Docker Engine API's ``BuildCache``) key names:
    raw bytes and RFC 3339 times, as buildx's documented example shows."""
    return {
        "ID": info.id,
        "Parents": list(info.parents),
        "CreatedAt": _rfc3339nano(info.created_at),
        "Mutable": info.mutable,
        "Reclaimable": info.reclaimable,
        "Shared": info.shared,
        "InUse": info.in_use,
        "Size": int(info.size),
        "Description": info.description,
        "UsageCount": int(info.usage_count),
        "LastUsedAt": _rfc3339nano(info.last_used_at),
        "Type": info.record_type,
        "ApparentSize": int(info.apparent_size) if info.apparent_size >= 0 else None,
        "Labels": dict(info.labels),
        "CacheMount": None
        if info.cache_mount is None
        else {
            "ID": info.cache_mount.cache_id,
            "Target": info.cache_mount.target,
            "Sharing": str(info.cache_mount.sharing),
        },
    }
