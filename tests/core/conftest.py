"""Fixtures of the core tests: a real tmpfs mount for the "another filesystem" cases."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _cannot(reason: str) -> None:
    """Skip where mounting is refused, but never under CI (it runs as root)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must be able to mount: {reason}")
    pytest.skip(reason)


@pytest.fixture
def mount_tmpfs() -> Iterator[Callable[[Path], None]]:
    """Mount a small tmpfs on a directory (root only; skipped where mounting is refused)."""
    mounted: list[Path] = []

    def mount(target: Path) -> None:
        if os.geteuid() != 0:
            _cannot("mounting a tmpfs needs root")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8m", "cachetui-test", str(target)],
            capture_output=True,
        )
        if done.returncode != 0:
            _cannot(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(target)

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)
