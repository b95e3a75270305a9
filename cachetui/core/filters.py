"""The containerd filter language, as BuildKit uses it for disk usage and prune.

This module owns the whole filter language: parsing a filter string into a `Filter`,
rejecting malformed or never-matching filters with `FilterSyntaxError` (with the 0-based
``position`` of the fault), rendering filters back to canonical text, matching them
against a record's fields, and the adapter `usage_fields` that turns one record into
those fields (BuildKit's ``adaptUsageInfo``). It does no I/O.

Grammar (one filter string)::

    filter   := selector ("," selector)*          all selectors must match (AND)
    selector := key [op value]                    a bare key is a presence test
    key      := [A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*   one of KEYS
              | "label." (labelkey | quoted)      a label (labelkey: [A-Za-z0-9][A-Za-z0-9._/-]*)
    op       := "==" | "!=" | "~="
    value    := '"' Go-style escapes '"'          \\" \\\\ \\n \\t \\r \\a \\b \\f \\v \\xNN \\uNNNN
                                                  \\UNNNNNNNN \\NNN (octal)
              | bare                              runs to the next ",", surrounding spaces
                                                  trimmed; must not start with = ! ~ and
                                                  must not contain '"'

Several filter strings form a `FilterSet`, which is their OR; an empty set matches
everything. Whitespace between tokens is ignored, as in containerd.

Semantics, per selector, on ``fields`` (a mapping key -> value; a missing key is absent):

- ``key==v``: the key is present and equal to ``v``;
- ``key!=v``: the value differs from ``v`` (an absent key counts as "");
- ``key~=re``: an unanchored RE2 search on the value ("" when absent);
- ``key``: the key is present.

Where this deliberately differs from containerd (a typo must never silently select
everything, or nothing, for deletion):

- unknown keys are errors, not absent fields;
- an empty filter string, an empty selector or an empty *unquoted* value are errors
  (write ``key==""`` for an explicit empty value);
- the flags ``inuse``, ``mutable``, ``immutable``, ``shared``, ``private`` are
  presence-only: giving them an operator is an error;
- ``type==`` and ``type!=`` take only a record type (``regular``, ``internal``,
  ``frontend``, ``source.local``, ``source.git.checkout``, ``exec.cachemount``);
- a filter string that can never match (``type==regular,type==internal``,
  ``type==regular,type!=regular``, ``type==regular,type~=^s``, ``mutable,immutable``,
  ``shared,private``) is an error;
- regular expressions are RE2's (through ``google-re2``): the syntax of Go's ``regexp``,
  which containerd uses, and matching in time linear in the value. A backtracking engine
  would let one filter (``description~=^(a+)+$``) run for minutes; RE2 has no
  backreferences or lookarounds, and a pattern it cannot compile is a
  `FilterSyntaxError` that says why.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import re2

from cachetui.core.errors import FilterSyntaxError
from cachetui.core.types import CacheMount, RecordType

__all__ = [
    "FLAG_KEYS",
    "KEYS",
    "LABEL_PREFIX",
    "OPERATORS",
    "Filter",
    "FilterSet",
    "Selector",
    "parse",
    "parse_all",
    "usage_fields",
]

#: Keys that carry a value (``key==v``, ``key!=v``, ``key~=re`` or bare presence).
#: ``cache-id``, ``target`` and ``sharing`` are a cache mount's identity; every
#: ``label.<key>`` is a value key too (not listed: there is one per label).
VALUE_KEYS: frozenset[str] = frozenset(
    {"id", "parents", "description", "type", "cache-id", "target", "sharing", "health"}
)
#: The prefix of label keys: ``label.team==infra``.
LABEL_PREFIX = "label."
#: Values ``sharing`` can take (a typo there would silently select nothing).
SHARING_VALUES: frozenset[str] = frozenset({"shared", "private", "locked"})
#: Presence-only keys: present (with value "") when true, absent when false.
FLAG_KEYS: frozenset[str] = frozenset({"inuse", "mutable", "immutable", "shared", "private"})
#: Every key a filter may name.
KEYS: frozenset[str] = VALUE_KEYS | FLAG_KEYS
#: The operators, in the order error messages list them ("" is the presence test).
OPERATORS: tuple[str, ...] = ("==", "!=", "~=")

_KNOWN_KEYS = ", ".join(sorted(KEYS)) + ", label.<key>"
#: Record types are a closed set: ``type==`` or ``type!=`` with anything else is a typo.
_RECORD_TYPES: frozenset[str] = frozenset(member.value for member in RecordType)
_KNOWN_TYPES = ", ".join(member.value for member in RecordType)
_OPPOSITE_FLAGS = {
    "mutable": "immutable",
    "immutable": "mutable",
    "shared": "private",
    "private": "shared",
}
_FLAG_MEANING = {
    "inuse": "records in use",
    "mutable": "mutable records",
    "immutable": "immutable records",
    "shared": "shared records",
    "private": "records that are not shared",
}
_FIELD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")
_LABEL_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_VALUE_CANNOT_START = frozenset("=!~")  # containerd reads these as an operator

# Plan codes for Filter.matches, cheapest first (the plan is sorted by code).
_PRESENT, _EQ, _NE, _SEARCH = 0, 1, 2, 3
_OP_CODES = {"": _PRESENT, "==": _EQ, "!=": _NE, "~=": _SEARCH}

_SIMPLE_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}
_HEX_WIDTH = {"x": 2, "u": 4, "U": 8}
_QUOTE_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\v": "\\v",
}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


# --------------------------------------------------------------------------- regexes


class Pattern(Protocol):
    """A compiled regular expression: what selectors keep for ``~=``."""

    def search(self, text: str) -> object | None: ...


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors become FilterSyntaxError, never stderr noise


class _Searcher:
    """An RE2 pattern whose ``search`` also takes text that is not valid UTF-8 (a lone
    surrogate in a description): RE2 needs UTF-8, so such text is searched with the
    surrogates replaced."""

    __slots__ = ("pattern", "search_raw")

    def __init__(self, pattern: Any) -> None:
        self.pattern = pattern
        self.search_raw = pattern.search

    def search(self, text: str) -> object | None:
        try:
            return self.search_raw(text)
        except UnicodeEncodeError:
            return self.search_raw(text.encode("utf-8", "replace").decode("utf-8"))


class RegexError(ValueError):
    """A pattern RE2 refuses; ``pos`` is the offset in the pattern when known."""

    def __init__(self, msg: str, pos: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.pos = pos


def compile_regex(pattern: str) -> Pattern:
    """Compile ``pattern`` with RE2; raises :class:`RegexError` saying why it cannot."""
    try:
        return _Searcher(re2.compile(pattern, options=_RE2_OPTIONS))
    except re2.error as err:
        reason = err.args[0] if err.args else str(err)
        msg = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    except UnicodeEncodeError as err:
        # A lone surrogate: undecodable bytes in the command line's filter text.
        raise RegexError(f"not valid Unicode at position {err.start}", err.start) from None
    except (RecursionError, OverflowError, MemoryError) as err:
        msg = f"cannot be compiled ({type(err).__name__})"
    # RE2 gives no offset; Python's parser often can (a plain syntax error).
    pos: int | None = None
    try:
        re.compile(pattern)
    except re.error as py_err:
        pos = py_err.pos
    except Exception:  # only looking for an offset: RE2 already refused the pattern
        pos = None
    raise RegexError(msg, pos)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Selector:
    """One ``key op value`` test. ``op`` is ``==``, ``!=``, ``~=`` or "" (presence).

    ``position`` is where the selector starts in the filter text it came from; it is
    informational and takes no part in equality.
    """

    key: str
    op: str
    value: str = ""
    position: int = field(default=0, compare=False)
    _pattern: Pattern | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problem = _selector_problem(self.key, self.op, self.value)
        if problem is not None:
            raise _error(self._render(), 0, problem)
        if self.op == "~=":
            object.__setattr__(self, "_pattern", compile_regex(self.value))

    def __str__(self) -> str:
        return self._render()

    def _render(self) -> str:
        key = _render_key(self.key)
        if not self.op:
            return key
        return f"{key}{self.op}{_render_value(self.value)}"

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether this one selector holds for ``fields``."""
        value = fields.get(self.key)
        if self.op == "":
            return value is not None
        if self.op == "==":
            return value == self.value
        if self.op == "!=":
            return (value or "") != self.value
        assert self._pattern is not None
        return self._pattern.search(value or "") is not None


_Step = tuple[int, str, str, Callable[[str], object] | None]


@dataclass(frozen=True, slots=True)
class Filter:
    """One filter string: the AND of its selectors.

    Building a `Filter` validates it (a filter that can never match raises
    `FilterSyntaxError`) and precomputes a matching plan, so `matches` is cheap.
    Equality compares the selectors, not the original text.
    """

    text: str = field(compare=False)
    selectors: tuple[Selector, ...]
    _plan: tuple[_Step, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        selectors = tuple(self.selectors)
        object.__setattr__(self, "selectors", selectors)
        if not self.text:
            object.__setattr__(self, "text", ",".join(map(str, selectors)))
        if not selectors:
            raise _error(self.text, 0, "empty filter: it has no selectors")
        _lint(self.text, selectors)
        steps: dict[tuple[int, str, str], _Step] = {}
        for s in selectors:
            code = _OP_CODES[s.op]
            search = s._pattern.search if s._pattern is not None else None
            steps.setdefault((code, s.key, s.value), (code, s.key, s.value, search))
        plan = tuple(sorted(steps.values(), key=lambda step: step[0]))
        object.__setattr__(self, "_plan", plan)

    def __str__(self) -> str:
        """Canonical text: ``parse(str(f)) == f``."""
        return ",".join(map(str, self.selectors))

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether every selector holds for ``fields`` (a missing key is absent)."""
        get = fields.get
        for code, key, value, search in self._plan:
            if code == _EQ:
                if get(key) != value:
                    return False
            elif code == _PRESENT:
                if key not in fields:
                    return False
            elif code == _NE:
                if get(key, "") == value:
                    return False
            elif search is not None and search(get(key, "")) is None:  # _SEARCH
                return False
        return True


@dataclass(frozen=True, slots=True)
class FilterSet:
    """The OR of several filters; an empty set matches everything (and is falsy)."""

    filters: tuple[Filter, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", tuple(self.filters))

    def __bool__(self) -> bool:
        return bool(self.filters)

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether any filter matches ``fields``; True when there are no filters."""
        if not self.filters:
            return True
        return any(f.matches(fields) for f in self.filters)


# --------------------------------------------------------------------------- API


def parse(text: str) -> Filter:
    """Parse one filter string (an AND of comma-separated selectors).

    Raises `FilterSyntaxError` naming the text and the 0-based position of the fault.

    >>> parse("type==source.local,mutable").matches({"type": "source.local", "mutable": ""})
    True
    """
    if not isinstance(text, str):
        raise TypeError(f"a filter must be a str, not {type(text).__name__}")
    if not text.strip():
        raise _error(text, 0, "empty filter (pass no filters at all to select everything)")
    selectors: list[Selector] = []
    unknown_type: tuple[int, str] | None = None
    i = 0
    while True:
        selector, i, value_pos = _parse_selector(text, i)
        if (
            unknown_type is None
            and selector.key == "type"
            and selector.op in ("==", "!=")
            and selector.value not in _RECORD_TYPES
        ):
            unknown_type = (value_pos, selector.value)
        selectors.append(selector)
        if i >= len(text):
            break
        i += 1  # the ","
    if unknown_type is not None:
        # type==bogus would select nothing and type!=bogus everything: both are typos.
        # Checked once the whole string parsed, so a syntax error is reported first.
        position, value = unknown_type
        raise _error(
            text, position, f"unknown record type {value!r} (record types: {_KNOWN_TYPES})"
        )
    return Filter(text, tuple(selectors))


def parse_all(texts: Iterable[str | Filter] | str | FilterSet) -> FilterSet:
    """Parse several filter strings into their OR. A bare ``str`` counts as one filter.

    Already-parsed `Filter` items (and a whole `FilterSet`) are accepted as they are.
    """
    if isinstance(texts, FilterSet):
        return texts
    if isinstance(texts, str):
        texts = (texts,)
    elif not isinstance(texts, Iterable) or isinstance(texts, bytes):
        raise FilterSyntaxError(
            f"invalid filters {texts!r}: expected filter strings", filter_text="", position=0
        )
    filters: list[Filter] = []
    for item in texts:
        if isinstance(item, Filter):
            filters.append(item)
        elif isinstance(item, str):
            filters.append(parse(item))
        else:
            raise FilterSyntaxError(
                f"invalid filter {item!r}: expected a string", filter_text="", position=0
            )
    return FilterSet(tuple(filters))


def usage_fields(
    *,
    id: str,
    parents: Sequence[str],
    description: str,
    record_type: str,
    in_use: bool,
    mutable: bool,
    shared: bool,
    labels: Iterable[tuple[str, str]] = (),
    cache_mount: CacheMount | None = None,
    health: str = "ok",
) -> dict[str, str]:
    """The fields a filter sees for one record (BuildKit's ``adaptUsageInfo``).

    ``id``, ``parents`` (joined by ";") and ``description`` are present only when
    non-empty; ``type`` is always present (an empty record type is "regular"). Flags are
    present, with value "", only when true: ``inuse``; ``mutable`` or ``immutable``;
    ``shared`` or ``private``. Each label is ``label.<key>``; a cache mount's identity is
    ``cache-id``, ``target`` (when not empty) and ``sharing``. ``health`` ("ok",
    "missing", "broken") is always present.
    """
    fields: dict[str, str] = {"type": str(record_type) or "regular", "health": health}
    if id:
        fields["id"] = id
    if parents:
        fields["parents"] = ";".join(parents)
    if description:
        fields["description"] = description
    if in_use:
        fields["inuse"] = ""
    fields["mutable" if mutable else "immutable"] = ""
    fields["shared" if shared else "private"] = ""
    for key, value in labels:
        fields[LABEL_PREFIX + key] = value
    if cache_mount is not None:
        fields["cache-id"] = cache_mount.cache_id
        if cache_mount.target:
            fields["target"] = cache_mount.target
        fields["sharing"] = str(cache_mount.sharing)
    return fields


# --------------------------------------------------------------------------- parsing


def _error(text: str, position: int, problem: str) -> FilterSyntaxError:
    return FilterSyntaxError(
        f"invalid filter {_quote(text)} at position {position}: {problem}",
        filter_text=text,
        position=position,
    )


def _skip_space(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    return i


def _parse_selector(text: str, i: int) -> tuple[Selector, int, int]:
    """Parse the selector starting at ``i``; return it, the index of "," or the end, and
    where its value starts (the end of the key for a bare key)."""
    n = len(text)
    i = _skip_space(text, i)
    if i >= n or text[i] == ",":
        raise _error(text, i, "empty selector: expected a field name")
    match = _FIELD_RE.match(text, i)
    if match is None:
        raise _error(
            text,
            i,
            f"unexpected {text[i]!r}: expected a field name "
            "(a letter followed by letters, digits or '_')",
        )
    key, key_pos, end = match.group(), i, match.end()
    if key == LABEL_PREFIX[:-1] and text.startswith(".", end):
        key, end = _parse_label_key(text, end + 1)
    elif key not in KEYS:
        raise _error(text, key_pos, _unknown_key(key))
    i = _skip_space(text, end)
    if i >= n or text[i] == ",":
        return Selector(key, "", "", key_pos), i, i

    op = text[i : i + 2]
    if op not in OPERATORS:
        raise _error(
            text,
            i,
            f"unexpected {text[i]!r}: expected one of ==, !=, ~= "
            f"(or ',' to end the selector) after {key!r}",
        )
    if key in FLAG_KEYS:
        raise _error(text, i, _flag_problem(key, op))

    i = value_pos = _skip_space(text, i + 2)
    quoted = i < n and text[i] == '"'
    if quoted:
        value, i = _scan_quoted(text, i)
        i = _skip_space(text, i)
        if i < n and text[i] != ",":
            raise _error(
                text,
                i,
                f"unexpected {text[i]!r}: expected ',' or the end after a quoted value",
            )
    else:
        end = text.find(",", i)
        end = n if end < 0 else end
        value = text[i:end].rstrip()
        if not value:
            raise _error(
                text,
                i,
                f'missing value for {key!r} after {op!r} (write {key}{op}"" to mean an '
                "empty value)",
            )
        if value[0] in _VALUE_CANNOT_START:
            raise _error(
                text,
                i,
                f"unexpected {value[0]!r}: expected a value after {op!r} "
                f"(quote a value that starts with {value[0]!r})",
            )
        quote_at = value.find('"')
        if quote_at >= 0:
            raise _error(
                text,
                i + quote_at,
                "unexpected '\"' inside an unquoted value (quote the whole value)",
            )
        i = end

    if op == "~=":
        try:
            compile_regex(value)
        except RegexError as err:
            offset = 0 if quoted or err.pos is None else err.pos
            raise _error(
                text,
                value_pos + offset,
                f"invalid regular expression {value!r} for {key!r}: {err.msg}",
            ) from None
    if key == "sharing" and op != "~=" and value not in SHARING_VALUES:
        raise _error(
            text, value_pos, f"invalid sharing mode {value!r}: expected locked, private or shared"
        )
    return Selector(key, op, value, key_pos), i, value_pos


def _unknown_key(key: str) -> str:
    if key == LABEL_PREFIX[:-1]:
        return f"{key!r} needs a label key: label.<key> (label.team==infra)"
    if key in {"labels", "label_", "cacheid", "cache_id", "cache-mount"}:
        hint = "label.<key>" if key.startswith("label") else "cache-id"
        return f"unknown filter key {key!r}: write {hint}"
    return f"unknown filter key {key!r} (known keys: {_KNOWN_KEYS})"


def _parse_label_key(text: str, start: int) -> tuple[str, int]:
    """The ``<key>`` of ``label.<key>`` at ``start``: bare, or Go-quoted for any text."""
    if text.startswith('"', start):
        name, end = _scan_quoted(text, start)
        if not name:
            raise _error(text, start, "empty label key after 'label.'")
        return LABEL_PREFIX + name, end
    match = _LABEL_KEY_RE.match(text, start)
    if match is None:
        raise _error(
            text,
            start,
            "expected a label key after 'label.' (letters, digits and . _ / -, "
            'or a quoted key: label."my key")',
        )
    return LABEL_PREFIX + match.group(), match.end()


def _render_key(key: str) -> str:
    """A key as the parser reads it back (a label key that is not bare gets quoted)."""
    if key.startswith(LABEL_PREFIX):
        name = key[len(LABEL_PREFIX) :]
        if _LABEL_KEY_RE.fullmatch(name) is None:
            return LABEL_PREFIX + _quote(name)
    return key


def _scan_quoted(text: str, start: int) -> tuple[str, int]:
    """Decode the Go-style quoted string at ``start``; return it and the index after it."""
    n = len(text)
    out: list[str] = []
    i = start + 1
    while i < n:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            break
        esc = text[i + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in _HEX_WIDTH:
            width = _HEX_WIDTH[esc]
            digits = text[i + 2 : i + 2 + width]
            if len(digits) != width or not _HEX_DIGITS.issuperset(digits):
                raise _error(text, i, f"invalid escape: \\{esc} needs {width} hex digits")
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise _error(text, i, f"invalid escape: \\{esc}{digits} is too large")
            out.append(chr(code))
            i += 2 + width
        elif esc in "01234567":
            digits = text[i + 1 : i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise _error(text, i, "invalid escape: octal escapes are \\000 to \\377")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise _error(text, i, f"unknown escape sequence '\\{esc}'")
    raise _error(text, start, f"unterminated quoted value (opened at position {start})")


def _flag_problem(key: str, op: str) -> str:
    hint = f"write it bare ({key!r}) to select {_FLAG_MEANING[key]}"
    opposite = _OPPOSITE_FLAGS.get(key)
    if opposite is not None:
        hint += f", or {opposite!r} for the others"
    return f"{key!r} is a flag and takes no {op!r}: {hint}"


def _selector_problem(key: str, op: str, value: str) -> str | None:
    """What is wrong with a directly built selector, if anything."""
    if key not in KEYS and not (key.startswith(LABEL_PREFIX) and len(key) > len(LABEL_PREFIX)):
        return _unknown_key(key)
    if op not in _OP_CODES:
        return f"unknown operator {op!r}: expected one of ==, !=, ~= or '' (presence)"
    if op == "":
        return f"a presence test on {key!r} takes no value" if value else None
    if key in FLAG_KEYS:
        return _flag_problem(key, op)
    if op == "~=":
        try:
            compile_regex(value)
        except RegexError as err:
            return f"invalid regular expression {value!r} for {key!r}: {err.msg}"
    if key == "sharing" and op in ("==", "!=") and value not in SHARING_VALUES:
        return f"invalid sharing mode {value!r}: expected one of locked, private, shared"
    return None


def _lint(text: str, selectors: tuple[Selector, ...]) -> None:
    """Reject an AND of selectors that no record can ever satisfy."""
    equal: dict[str, Selector] = {}
    differ: dict[str, list[Selector]] = {}
    searches: dict[str, list[Selector]] = {}
    flags: set[str] = set()

    def never(s: Selector, why: str) -> FilterSyntaxError:
        return _error(text, s.position, f"can never match: {why}")

    for s in selectors:
        key = s.key
        if s.op == "":
            opposite = _OPPOSITE_FLAGS.get(key)
            if opposite in flags:
                raise never(
                    s,
                    f"a record cannot be both {opposite!r} and {key!r}; "
                    "use separate filters to OR them",
                )
            flags.add(key)
        elif s.op == "==":
            first = equal.get(key)
            if first is not None and first.value != s.value:
                raise never(
                    s,
                    f"{key!r} cannot equal both {first.value!r} and {s.value!r}; "
                    "use separate filters to OR them",
                )
            for other in differ.get(key, ()):
                if other.value == s.value:
                    raise never(s, f"{key!r} cannot both equal and differ from {s.value!r}")
            for other in searches.get(key, ()):
                if other._pattern is not None and not other._pattern.search(s.value):
                    raise never(
                        s, f"{key!r} == {s.value!r} does not match {other.value!r} ({key}~=)"
                    )
            equal.setdefault(key, s)
        elif s.op == "!=":
            first = equal.get(key)
            if first is not None and first.value == s.value:
                raise never(s, f"{key!r} cannot both equal and differ from {s.value!r}")
            differ.setdefault(key, []).append(s)
        else:
            first = equal.get(key)
            if first is not None and s._pattern is not None and not s._pattern.search(first.value):
                raise never(s, f"{key!r} == {first.value!r} does not match {s.value!r} ({key}~=)")
            searches.setdefault(key, []).append(s)


# --------------------------------------------------------------------------- rendering


def _quote(value: str) -> str:
    """Go-style double-quoted form of ``value`` (what the parser reads back)."""
    out = ['"']
    for ch in value:
        escaped = _QUOTE_ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _render_value(value: str) -> str:
    """A value as the parser reads it back: bare when that is unambiguous, else quoted."""
    bare = (
        value != ""
        and value.isprintable()
        and value[0] not in _VALUE_CANNOT_START
        and not any(ch in value for ch in ' ,"')
    )
    return value if bare else _quote(value)
