"""Count what the dashboard's two busiest paths cross (a script, not a test).

    python bench/trace_paths.py [--list]

The paths:

* **prune**: with two records marked, the key ``d``, the confirmation ``y``, until the
  records' layer directories are gone from disk;
* **size**: a file written into a layer directory (by this process, outside the app),
  until the tree's view holds the new size and the screen has redrawn once.

Method: a profiler (``sys.setprofile`` and ``threading.setprofile``, so worker, feed and
Textual threads count too) records every Python function call whose code lives in the
``cachetui`` package, from the trigger to the end condition, on the fixture store of the
UI tests (``tests/ui/store_fixture``), under a Textual Pilot. The polling that waits for
the end condition is excluded; the prune path stops counting as the call that removed the
last directory returns. Reported per path: the distinct ``cachetui`` modules, the
distinct functions, the call events, and the entries into ``cachetui`` (a call with no
``cachetui`` caller: a message handler, a worker, a render, a feed callback) and how often
they switch between the UI thread and other threads: the hops a path makes. Counts are
given in all and split into the core (``cachetui.core``) and the rest (service, views,
app, screens, widgets). The liveness ticker is slowed to once an hour so its periodic
re-read does not land in the window.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PACKAGE = str(REPO / "cachetui")


class Tracer:
    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        # each time control enters cachetui from outside it (a message handler, a worker,
        # a render, a feed callback): where, and on which thread, in order
        self.entries: list[tuple[str, str]] = []
        self.on = False
        self.quiet_thread: int | None = None  # the polling thread while it probes
        # checked as each cachetui call returns: counting stops the moment it holds
        self.end: Callable[[], bool] | None = None
        self._lock = threading.Lock()

    def _profile(self, frame: FrameType, event: str, _arg: Any) -> None:
        if not self.on or event not in ("call", "return"):
            return
        filename = frame.f_code.co_filename
        if not filename.startswith(PACKAGE):
            return
        if event == "return":
            if self.end is not None and self.end():
                self.on = False
            return
        if self.quiet_thread == threading.get_ident():
            return
        module = "cachetui" + filename[len(PACKAGE) :].removesuffix(".py").replace("/", ".")
        module = module.removesuffix(".__init__")
        outer = frame.f_back
        while outer is not None and not outer.f_code.co_filename.startswith(PACKAGE):
            outer = outer.f_back
        thread = "ui" if threading.current_thread() is threading.main_thread() else "thread"
        with self._lock:
            self.calls[(module, frame.f_code.co_qualname)] += 1
            if outer is None:
                self.entries.append((thread, f"{module}.{frame.f_code.co_qualname}"))

    def install(self) -> None:
        """Profile every thread started from now on (a thread pool's threads outlive one
        action: they must carry the profiler from the start); counting waits for start."""
        threading.setprofile(self._profile)
        sys.setprofile(self._profile)

    def uninstall(self) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]

    def start(self, end: Callable[[], bool] | None = None) -> None:
        self.end = end
        self.calls.clear()
        self.entries.clear()
        self.on = True

    def stop(self) -> None:
        self.on = False

    def probe(self, predicate: Callable[[], object]) -> bool:
        self.quiet_thread = threading.get_ident()
        try:
            return bool(predicate())
        finally:
            self.quiet_thread = None

    def report(self, name: str, listing: bool) -> None:
        modules = sorted({m for m, _ in self.calls})
        print(
            f"{name}: {len(modules)} modules, {len(self.calls)} functions, "
            f"{sum(self.calls.values())} calls"
        )
        for part, keep in (("  outside core", False), ("  core", True)):
            calls = {
                k: n for k, n in self.calls.items() if k[0].startswith("cachetui.core") == keep
            }
            print(
                f"{part}: {len({m for m, _ in calls})} modules, {len(calls)} functions, "
                f"{sum(calls.values())} calls"
            )
        switches = sum(
            1 for a, b in zip(self.entries, self.entries[1:], strict=False) if a[0] != b[0]
        )
        print(
            f"  entries into cachetui: {len(self.entries)} "
            f"({len(set(self.entries))} distinct), UI <-> thread switches: {switches}"
        )
        print("  modules: " + ", ".join(m.removeprefix("cachetui.") for m in modules))
        if listing:
            print("  entries in order (repeats folded):")
            last, count = None, 0
            for entry in [*self.entries, None]:
                if entry == last:
                    count += 1
                    continue
                if last is not None:
                    print(f"    {last[0]:6s} {last[1]}" + (f" x{count}" if count > 1 else ""))
                last, count = entry, 1
            for (module, fn), n in sorted(self.calls.items()):
                print(f"    {n:6d}  {module}.{fn}")


async def wait(pilot: Any, tracer: Tracer, predicate: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 30
    while not tracer.probe(predicate):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await pilot.pause(0.005)


def make_app(root: Path, live: bool) -> Any:
    from cachetui.app import CacheTuiApp
    from cachetui.service import CacheService
    from tests.ui.store_fixture import FixedClock, fixed_disk_stat

    clock = FixedClock()
    service = CacheService(
        root, clock=clock, disk_stat_fn=fixed_disk_stat, liveness_interval=3600.0
    )
    app = CacheTuiApp(root, clock=clock, live=live, service=service)
    app.animation_level = "none"
    return app


async def trace_prune(root: Path, ids: dict[str, str], tracer: Tracer) -> None:
    app = make_app(root, live=False)
    async with app.run_test(size=(130, 36)) as pilot:
        await wait(pilot, tracer, lambda: app.loaded, "the store to load")
        await pilot.pause(0.2)
        app.ref_tree.select_id(ids["old"])
        await pilot.press("space", "space")
        await pilot.pause(0.2)
        assert app.marks == {ids["old"], ids["gomod"]}, app.marks
        gone = [root / "snapshots" / ids["old"], root / "snapshots" / ids["gomod"]]

        def removed() -> bool:
            return not any(p.exists() for p in gone)

        tracer.start(end=removed)  # stops as the call that removed the last one returns
        await pilot.press("d")
        from cachetui.screens.dialogs import ConfirmPruneScreen

        await wait(pilot, tracer, lambda: isinstance(app.screen, ConfirmPruneScreen), "dialog")
        await pilot.press("y")
        await wait(pilot, tracer, removed, "the removal")
        tracer.stop()


async def trace_size(root: Path, ids: dict[str, str], tracer: Tracer) -> None:
    app = make_app(root, live=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await wait(pilot, tracer, lambda: app.loaded, "the store to load")
        await pilot.pause(0.5)  # the feed has started
        record = ids["local"]
        row = app.ref_tree.view.rows[record]
        before = row.size
        layer = Path(row.layer_path)
        await pilot.pause(0.5)
        tracer.start()
        (layer / "written-by-trace").write_bytes(b"x" * 3_000_000)
        await wait(
            pilot,
            tracer,
            lambda: app.ref_tree.view.rows[record].size > before,
            "the new size",
        )
        await pilot.pause()  # one redraw
        tracer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="list every function and count")
    args = parser.parse_args()
    from tests.ui.store_fixture import build_fixture_store

    for name, run in (
        ("prune (d, y -> files gone)", trace_prune),
        ("size (write -> screen)", trace_size),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "store"
            ids = build_fixture_store(root)
            tracer = Tracer()
            tracer.install()
            try:
                asyncio.run(run(root, ids, tracer))
            finally:
                tracer.uninstall()
            tracer.report(name, args.list)


if __name__ == "__main__":
    main()
