"""Real mounts for the tests that need one: a bind mount of a directory that lives
outside the store (a canary) or a small tmpfs, undone afterwards.

Mounting needs root; under ``CI=true`` (where the suite runs as root) a refused mount
fails the test instead of skipping it. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

__all__ = ["CANARY", "canary", "canary_intact", "mount", "mounts_under", "unmount_under"]

CANARY = b"alive" * 2000


def _cannot(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI runs as root and must mount: {reason}")
    pytest.skip(reason)


def mounts_under(path: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below ``path``, deepest first, from ``/proc/self/mountinfo``
    read now. Not ``fsops.mounts_below``: its table is read again only after a mount or
    unmount, so a mount whose directory a prune renamed since (``rm-<id>`` and back)
    is still listed there under its old name, and unmounting that name fails."""
    top = os.path.realpath(path).rstrip("/")
    try:
        with open("/proc/self/mountinfo", "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    found = set()
    for line in lines:
        fields = line.split(b" ", 5)
        if len(fields) < 5:
            continue
        point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), fields[4])
        text = os.fsdecode(point)
        if text == top or text.startswith(top + "/"):
            found.add(text)
    return sorted(found, key=len, reverse=True)


def unmount_under(path: str | os.PathLike[str]) -> list[str]:
    """Unmount (lazily) every mount at or below ``path``; returns what was mounted."""
    found = mounts_under(path)
    for point in found:
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    return found


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """``mount(source, target)`` bind-mounts; ``mount(None, target)`` mounts a tmpfs.

    Afterwards every mount below ``tmp_path`` goes, deepest first, wherever a prune
    may have moved it (the table read afresh); one that will not go fails the test.
    """

    def do(source: Path | None, target: Path) -> None:
        if os.geteuid() != 0:
            _cannot("mounting needs root")
        command = (
            ["mount", "-t", "tmpfs", "-o", "size=4m", "cachetui-test", str(target)]
            if source is None
            else ["mount", "--bind", str(source), str(target)]
        )
        done = subprocess.run(command, capture_output=True)
        if done.returncode:
            _cannot(f"cannot mount here: {done.stderr.decode().strip()}")

    yield do
    unmount_under(tmp_path)
    left = mounts_under(tmp_path)
    if left:
        pytest.fail(f"mounts left under {tmp_path} after unmounting: {left}")


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A directory outside the store whose files must survive everything."""
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "canary").write_bytes(CANARY)
    (outside / "deep" / "canary").write_bytes(CANARY)
    return outside


def canary_intact(canary: Path) -> None:
    assert (canary / "canary").read_bytes() == CANARY
    assert (canary / "deep" / "canary").read_bytes() == CANARY
