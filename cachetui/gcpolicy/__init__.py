"""GC policy files: what ``cachetui gc --policy FILE`` reads, and the default list.

One module per format (``buildkitd``, ``daemonjson``, ``native``), Docker's filter
translation in ``dockerfilter`` (also used by ``prune --filter until=24h``), whole-list
checks in ``lint``. The result is a ``PolicyList`` of the core's ``PruneOptions``; the
core runs it. A file is recognised by its shape, not its name: JSON is ``daemon.json``;
TOML with ``[[tier]]`` tables is cachetui's own; any other TOML is ``buildkitd.toml``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from cachetui.core import DiskStat, InvalidError, default_gc_policies
from cachetui.gcpolicy import buildkitd, daemonjson, native
from cachetui.gcpolicy.lint import lint
from cachetui.gcpolicy.model import ERROR, WARNING, PolicyError, PolicyList, Problem, Tier

__all__ = [
    "ERROR",
    "WARNING",
    "PolicyError",
    "PolicyList",
    "Problem",
    "Tier",
    "default_policy",
    "load_policy",
    "parse_policy",
]

DEFAULT_SOURCE = "BuildKit's default list for this disk"


def default_policy(dstat: DiskStat | None) -> PolicyList:
    """BuildKit's four default tiers for the disk ``dstat`` describes."""
    tiers = tuple(
        Tier(options, name=f"BuildKit default #{i + 1}")
        for i, options in enumerate(default_gc_policies(dstat))
    )
    return PolicyList(source=DEFAULT_SOURCE, kind="default", tiers=tiers)


def _kind(text: str, name: str) -> tuple[str, dict[str, object] | None]:
    stripped = text.lstrip()
    if name.endswith(".json") or stripped.startswith("{"):
        return "daemon.json", None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return "buildkitd.toml", None  # the reader reports the error with its line
    if "tier" in data:
        return "cachetui", data
    return "buildkitd.toml", data


def parse_policy(text: str, source: str, dstat: DiskStat | None) -> PolicyList:
    """Read a policy file's text (see the module docstring). ``PolicyError`` lists every
    error with its line; warnings ride along in ``PolicyList.problems``."""
    kind, data = _kind(text, source)
    configured = True
    if kind == "daemon.json":
        tiers, problems, configured = daemonjson.read(text, source, dstat)
    elif kind == "cachetui":
        assert data is not None
        tiers, problems = native.read(data, text, dstat)
    else:
        tiers, problems, configured = buildkitd.read(text, source, dstat, data)
    errors = [p for p in problems if p.severity == ERROR]
    if errors:
        raise PolicyError(source, errors)
    problems = problems + lint(tiers, configured=configured)
    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    return PolicyList(source=source, kind=kind, tiers=tuple(tiers), problems=tuple(problems))


def load_policy(path: str | os.PathLike[str], dstat: DiskStat | None) -> PolicyList:
    """Read the policy file at ``path``; an unreadable file is ``InvalidError`` naming it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidError(f"cannot read policy file {str(file)!r}: {err}") from None
    return parse_policy(text, str(file), dstat)
