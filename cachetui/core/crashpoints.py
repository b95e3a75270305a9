"""Test-only crash points: ``CACHETUI_CRASH_AT=<name>`` makes the process die there.

Crash tests run a real subprocess with the variable set; at the named point the process
ends with ``os._exit(137)``, as abruptly as a SIGKILL: no cleanup, no ``finally``, no
SQLite rollback on our side. The names are listed in ``CRASH_POINTS``.
"""

from __future__ import annotations

import os

__all__ = ["CRASH_POINTS", "crash_point"]

CRASH_POINTS = (
    "prepare:staged",
    "prepare:renamed",
    "prepare:committed",
    "commit:inserted",
    "commit:committed",
    "finalize:renamed",
    "finalize:committed",
    "release:tombstoned",
    "release:committed",
    "release:removed",
    "prune:tombstoned",
    "prune:committed",
    "prune:removed",
    "prune:batch-done",
    "migrate:after_ddl",
)


def crash_point(name: str) -> None:
    """Die here if the test harness asked for it."""
    if os.environ.get("CACHETUI_CRASH_AT") == name:
        os._exit(137)
