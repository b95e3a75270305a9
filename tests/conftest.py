"""Shared fixtures: a controllable clock and managers over real temporary stores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from cachetui.core import CacheManager
from tests.mounting import mounts_under, unmount_under

settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("ci")

T0 = 1_790_000_000.0  # 2026-09-21, a fixed "now" for deterministic tests


class FakeClock:
    """A clock tests move by hand (``clock.advance(3600)``)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture(autouse=True)
def _no_mount_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that leaves a mount under the temporary directories fails (and the mount
    goes): a leaked mount outlives the run and pins whatever it shows."""
    base = tmp_path_factory.getbasetemp()
    before = set(mounts_under(base))
    yield
    left = [point for point in mounts_under(base) if point not in before]
    if left:
        for point in left:
            unmount_under(point)
        pytest.fail(f"the test left mounts behind: {left}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def cm(root: Path, clock: FakeClock) -> Iterator[CacheManager]:
    manager = CacheManager.open(root, clock=clock)
    yield manager
    manager.close()


def layer_dirs(root: Path) -> list[str]:
    """Snapshot directories on disk (what BuildKit's tests call "dirs")."""
    return sorted(os.listdir(root / "snapshots"))


def write_file(directory: Path, name: str, size: int) -> None:
    (directory / name).write_bytes(b"x" * size)
