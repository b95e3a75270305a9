"""Plain search beside the filter language: typing ``golang`` finds it in ids and
descriptions, as ``/`` does in ncdu and gdu.

How a text is told apart from a filter expression (one rule, for every screen):

* it is a **filter expression** when it contains one of the language's operator
  characters (``=``, ``!``, ``~``) or a comma, or when it is a single word that the
  language knows as a key (``mutable``, ``inuse``, ``shared``, ``id``, ``label.team``,
  ...): then it is parsed and validated as always, and a typo is an error, never a
  silent search;
* anything else is a **plain search**: every word (split on spaces) must appear,
  ignoring case, in the record's id or its description. ``go build`` finds
  "RUN go build ./...", ``3f9a`` finds ids containing it. To search for a word that is
  a key (``mutable``), write the expression: ``description~=mutable``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from cachetui.core import filters as filter_language


class Searchable(Protocol):
    """What a plain search reads of a record (a ``RecordState`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def description(self) -> str: ...


__all__ = ["is_expression", "search_ids", "search_words"]

_OPERATOR_CHARS = frozenset("=!~,")


def is_expression(text: str) -> bool:
    """Whether ``text`` is a filter expression (else a plain search; see the module)."""
    stripped = text.strip()
    if not stripped:
        return False
    if any(ch in _OPERATOR_CHARS for ch in stripped):
        return True
    if " " in stripped or "\t" in stripped:
        return False
    return stripped in filter_language.KEYS or stripped.startswith(filter_language.LABEL_PREFIX)


def search_words(text: str) -> tuple[str, ...]:
    """The words of a plain search, folded for a case-insensitive match."""
    return tuple(word.casefold() for word in text.split())


def search_ids(states: Iterable[Searchable], text: str) -> frozenset[str]:
    """The ids of the records whose id or description contains every word of ``text``."""
    words = search_words(text)
    if not words:
        return frozenset(s.id for s in states)
    found = set()
    for state in states:
        haystack = f"{state.id}\n{state.description}".casefold()
        if all(word in haystack for word in words):
            found.add(state.id)
    return frozenset(found)
