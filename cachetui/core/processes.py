"""Who holds a ref: the identity of a process, and whether it is still alive.

A holder row names its process by pid, a start token and the host. The start token is
the boot id plus the process start time in clock ticks (``/proc/<pid>/stat`` field 22),
so a pid reused after the holder died, or after a reboot, never looks alive. Zombies
count as dead: the process has exited, only its parent has not reaped it yet.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache

__all__ = ["ProcessIdentity", "current_process", "is_alive", "process_start_token"]


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    pid: int
    start: str
    host: str


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown-boot"


@cache
def _hostname() -> str:
    return socket.gethostname()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    tail = raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()
    return tail  # tail[0] is field 3 (state), tail[19] is field 22 (starttime)


def process_start_token(pid: int) -> str | None:
    """The start token of a running process, or None when it is gone (or a zombie)."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return f"{_boot_id()}:{fields[19]}"


def current_process() -> ProcessIdentity:
    """This process (computed each time: a forked child is a different holder)."""
    pid = os.getpid()
    return ProcessIdentity(pid, process_start_token(pid) or f"{_boot_id()}:?", _hostname())


def is_alive(pid: int, start: str, host: str) -> bool:
    """Whether the holder process still runs. Holders on other hosts are assumed alive."""
    if host != _hostname():
        return True
    return process_start_token(pid) == start
