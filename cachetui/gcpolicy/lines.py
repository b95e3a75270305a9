"""Line numbers for keys in TOML and JSON policy files.

``tomllib`` and ``json`` return values without positions; a warning that cannot say
where it applies is hard to act on. These scanners read the same text once more and map
each key (by its table or JSON path) to the line it is written on. They only locate:
the parsers decide what the file means, so a scanner that misses a line (an exotic
layout) costs a line number, never a wrong value.
"""

from __future__ import annotations

import re

__all__ = ["JsonPath", "TomlLines", "json_key_lines"]

_TOML_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_TOML_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*=""")

JsonPath = tuple[str | int, ...]


def _unquote(part: str) -> str:
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
        return part[1:-1]
    return part


class TomlLines:
    """Where each table and key of a TOML text is: ``table(path, n)`` is the line of the
    ``n``-th ``[[path]]`` (or of ``[path]`` for n=0), ``key(path, n, name)`` the line of
    ``name = ...`` inside it. Lines count from 1; None when not found."""

    def __init__(self, text: str) -> None:
        self._tables: dict[tuple[str, int], int] = {}
        self._keys: dict[tuple[str, int, str], int] = {}
        counts: dict[str, int] = {}
        current: tuple[str, int] = ("", 0)
        for number, line in enumerate(text.splitlines(), start=1):
            header = _TOML_HEADER.match(line)
            if header is not None and not line.lstrip().startswith("#"):
                path = ".".join(_unquote(p) for p in header.group(2).split("."))
                if header.group(1) == "[[":
                    index = counts.get(path, 0)
                    counts[path] = index + 1
                else:
                    index = 0
                current = (path, index)
                self._tables.setdefault(current, number)
                continue
            key = _TOML_KEY.match(line)
            if key is not None:
                self._keys.setdefault((*current, _unquote(key.group(1))), number)

    def table(self, path: str, index: int = 0) -> int | None:
        return self._tables.get((path, index))

    def key(self, path: str, index: int, name: str) -> int | None:
        return self._keys.get((path, index, name))


def json_key_lines(text: str) -> dict[JsonPath, int]:
    """The line of every object key in a JSON text, by its path (keys and list indexes);
    a list element's own path maps to the line where it starts."""
    lines: dict[JsonPath, int] = {}
    # Each open container: [is_list, path of the container, current index or key].
    stack: list[list[object]] = []
    line = 1
    i = 0
    n = len(text)

    def element_path() -> JsonPath:
        if not stack:
            return ()
        top = stack[-1]
        base = top[1]
        assert isinstance(base, tuple)
        return (*base, top[2])

    def start_value() -> None:
        if stack and stack[-1][0]:
            lines.setdefault(element_path(), line)

    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            token = text[i + 1 : j]
            k = j + 1
            while k < n and text[k] in " \t\r\n":
                k += 1
            if k < n and text[k] == ":" and stack and not stack[-1][0]:
                stack[-1][2] = token
                lines.setdefault(element_path(), line)
            else:
                start_value()
            line += text.count("\n", i, j)
            i = j
        elif ch in "{[":
            start_value()
            path = element_path() if stack else ()
            stack.append([ch == "[", path, 0 if ch == "[" else ""])
        elif ch in "}]":
            if stack:
                stack.pop()
        elif ch == "," and stack and stack[-1][0]:
            index = stack[-1][2]
            assert isinstance(index, int)
            stack[-1][2] = index + 1
        elif (
            not ch.isspace() and ch != ":" and stack and stack[-1][0] and text[i - 1] in " \t\r\n,["
        ):
            start_value()
        i += 1
    return lines
