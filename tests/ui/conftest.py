"""Fixtures for the dashboard tests: a fixed store on disk, a fixed clock, helpers."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from cachetui.app import CacheTuiApp
from tests.ui.store_fixture import FixedClock, build_fixture_store, fixed_disk_stat

_TEMPLATE: dict[str, object] = {}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "TEXTUAL_THEME", "TEXTUAL_ANIMATIONS", "TEXTUAL_COLOR_SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the fixture store (built once per worker) and its name -> id map."""
    if "root" not in _TEMPLATE:
        template = tmp_path_factory.mktemp("template") / "store"
        _TEMPLATE["ids"] = build_fixture_store(template)
        _TEMPLATE["root"] = template
    root = tmp_path / "store"
    shutil.copytree(_TEMPLATE["root"], root)  # type: ignore[arg-type]
    return root, dict(_TEMPLATE["ids"])  # type: ignore[arg-type]


def make_app(root: Path, **kwargs: object) -> CacheTuiApp:
    kwargs.setdefault("clock", FixedClock())
    kwargs.setdefault("live", False)
    kwargs.setdefault("disk_stat", fixed_disk_stat)
    app = CacheTuiApp(root, **kwargs)  # type: ignore[arg-type]
    app.animation_level = "none"
    return app


async def wait_for(
    pilot: Pilot, predicate: Callable[[], object], timeout: float = 15.0, what: str = ""
) -> None:
    """Poll ``predicate`` (letting the app run) until it is true, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.01)


async def settle(pilot: Pilot) -> None:
    """Wait for the workers, then for the messages they posted.

    A newer request cancels an exclusive worker (details, live refresh); that is fine.
    """
    for _ in range(2):
        for _attempt in range(10):
            try:
                await pilot.app.workers.wait_for_complete()
                break
            except WorkerCancelled:
                continue
        await pilot.pause()


async def loaded(pilot: Pilot, *, expect_error: bool = False) -> CacheTuiApp:
    app = pilot.app
    assert isinstance(app, CacheTuiApp)
    await wait_for(pilot, lambda: app.loaded or app.load_error, what="the store to load")
    if app.load_error and not expect_error:
        raise AssertionError(f"the store did not open: {app.load_error}")
    await settle(pilot)
    return app
