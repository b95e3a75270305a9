"""The values a policy file turns into: tiers, problems found in the file, the list.

A ``PolicyList`` is what ``cachetui gc`` runs and prints: the ordered ``PruneOptions``
(the core's policy value), where each tier was written, and every problem found, with its
line. ``PolicyError`` carries the problems that make a file refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cachetui.core import InvalidError, PruneOptions

__all__ = ["ERROR", "WARNING", "PolicyError", "PolicyList", "Problem", "Tier"]

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in a policy file that cannot mean what its author wanted.

    ``severity`` is ``error`` (the file is refused) or ``warning`` (it runs, as written).
    ``line`` counts from 1 (None when the problem is about the file as a whole).
    """

    severity: str
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True, slots=True)
class Tier:
    """One policy of the list: the core's ``PruneOptions``, its name and its line."""

    options: PruneOptions
    name: str = ""
    line: int | None = None


@dataclass(frozen=True, slots=True)
class PolicyList:
    """An ordered GC list read from ``source`` (a path, or a description of the defaults).

    ``kind`` is ``buildkitd.toml``, ``daemon.json``, ``cachetui`` or ``default``.
    """

    source: str
    kind: str
    tiers: tuple[Tier, ...]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def policies(self) -> list[PruneOptions]:
        return [tier.options for tier in self.tiers]

    @property
    def min_free_space(self) -> int:
        """The largest ``min_free_space`` of the list (0 when none): below that much free
        space, ``gc --watch`` runs at once."""
        return max((tier.options.min_free_space for tier in self.tiers), default=0)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == WARNING)


class PolicyError(InvalidError):
    """A policy file refused: every problem found, each with its line."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = [p.render(source) for p in problems]
        super().__init__("policy file refused:\n  " + "\n  ".join(lines))
