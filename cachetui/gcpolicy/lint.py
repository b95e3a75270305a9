"""Checks on a whole GC list: what each tier means next to the others.

Per-value problems (unknown keys, bad sizes, a percentage above 100, a filter that can
never match) are found by the readers as they parse. This module looks at the list:

* a tier **shadowed** by an earlier one: the earlier tier has no space limit (it removes
  everything it matches), keeps no more, and matches everything the later one does, so
  the later tier can never remove a record;
* a **keep-duration tier with no space limit behind it**: records used within the keep
  duration are never removed, and no tier without a keep duration and without filters
  caps the space, so the cache can grow without bound (KBVE/kbve#13573), or a cap is
  never reached because every record is pinned (mirendev/runtime#879);
* ``reservedSpace`` above ``maxUsedSpace``: BuildKit keeps the larger, so the cap has no
  effect;
* a list with **no ``all`` tier**: internal and frontend records are never removed (a
  configured list replaces BuildKit's defaults, whose last tier is ``all``).
"""

from __future__ import annotations

from collections.abc import Sequence

from cachetui.gcpolicy.model import WARNING, Problem, Tier
from cachetui.units import format_bytes_buildx

__all__ = ["describe_duration", "lint"]


def describe_duration(seconds: float) -> str:
    """``48h``, ``60d``, ``90s``: the shortest exact spelling of a keep duration."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    # Days only from a week up: BuildKit writes 48h, and Go durations have no days.
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole and whole % size == 0 and (unit != "d" or whole >= 7 * 86400):
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _label(index: int, tier: Tier) -> str:
    where = f" (line {tier.line})" if tier.line is not None else ""
    return f"tier {index + 1}{where}"


def _covers(earlier: Tier, later: Tier) -> bool:
    """True when ``earlier`` removes every record ``later`` could (see module doc)."""
    a, b = earlier.options, later.options
    if a.has_space_limit:
        return False
    if b.all and not a.all:
        return False
    if a.keep_seconds > b.keep_seconds:
        return False
    if not a.filters:
        return True
    return bool(b.filters) and set(b.filters) <= set(a.filters)


def lint(tiers: Sequence[Tier], *, configured: bool = True) -> list[Problem]:
    """Warnings about the list as a whole (see the module docstring).

    ``configured`` is False for BuildKit's own default list, which is not linted for
    the missing ``all`` tier.
    """
    problems: list[Problem] = []
    for j, later in enumerate(tiers):
        for i in range(j):
            if _covers(tiers[i], later):
                problems.append(
                    Problem(
                        WARNING,
                        f"tier {j + 1} can never remove anything: {_label(i, tiers[i])} "
                        "has no space limit and already removes every record it matches",
                        later.line,
                    )
                )
                break
        opts = later.options
        if (
            opts.reserved_space
            and opts.max_used_space
            and opts.reserved_space > opts.max_used_space
        ):
            problems.append(
                Problem(
                    WARNING,
                    f"tier {j + 1}: reservedSpace {format_bytes_buildx(opts.reserved_space)} is "
                    f"above maxUsedSpace {format_bytes_buildx(opts.max_used_space)}: the larger "
                    "wins, so the cache is kept at the reserved size and the cap does nothing",
                    later.line,
                )
            )
    pinned = [i for i, tier in enumerate(tiers) if tier.options.keep_seconds]
    if pinned:
        last = pinned[-1]
        capped = any(
            tier.options.has_space_limit
            and not tier.options.keep_seconds
            and not tier.options.filters
            for tier in tiers[last:]
        )
        if not capped:
            keep = describe_duration(tiers[last].options.keep_seconds)
            problems.append(
                Problem(
                    WARNING,
                    f"tier {last + 1} keeps every record used within {keep}, and no later tier "
                    "without a keep duration or filters limits the space: the cache can grow "
                    "without bound (add a last tier with maxUsedSpace and no keepDuration)",
                    tiers[last].line,
                )
            )
    if configured and tiers and not any(tier.options.all for tier in tiers):
        problems.append(
            Problem(
                WARNING,
                "no tier has all = true: internal and frontend records are never removed "
                "(a configured list replaces BuildKit's defaults, whose last tier is all)",
                None,
            )
        )
    return problems
