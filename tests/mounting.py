"""Real mounts for the tests that need one: a bind mount of a directory that lives
outside the store (a canary) or a small tmpfs, undone afterwards.

Mounting needs root; under ``CI=true`` (where the suite runs as root) a refused mount
fails the test instead of skipping it. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cachetui.core import fsops

__all__ = ["CANARY", "canary", "canary_intact", "mount"]

CANARY = b"alive" * 2000


def _cannot(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI runs as root and must mount: {reason}")
    pytest.skip(reason)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """``mount(source, target)`` bind-mounts; ``mount(None, target)`` mounts a tmpfs.

    Afterwards every mount below ``tmp_path`` goes, deepest first, wherever a failing
    prune may have moved it.
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
    for point in sorted(fsops.mounts_below(tmp_path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


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
