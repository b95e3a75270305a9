"""Benchmark the dashboard (a script, not a test): paint, row update, live latency, memory.

    python bench/bench_dashboard.py [--records 10000] [--big 100000] [--writes 15]

How the stores are built: ``bench/common.build_flat_store`` creates the schema through the
manager, then inserts rows in bulk with SQL (chains of ten finalized records, sizes cached)
and one empty layer directory per record: creating 100,000 records through the API would
cost a transaction each and measure nothing the dashboard does. A few mutable records are
then added through the API (``cm.new()``), so the live test writes into a real layer.

Each measurement runs in a fresh subprocess (``--measure``) so the peak memory
(``ru_maxrss``) is the dashboard's alone. Goals: first paint < 0.5 s (with the subtree
columns) and one row update < 20 ms at 10,000 records, a file write reaching the screen
in < 0.2 s (median), peak memory < 200 MB; at 100,000 records first paint < 1 s and a
row update < 20 ms. The load average is printed with the figures: on a shared machine
they scale with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def build(root: Path, count: int) -> None:
    from common import build_flat_store

    from cachetui.core import CacheManager

    build_flat_store(root, count)
    with CacheManager.open(root) as cm:
        for i in range(3):
            m = cm.new(description=f"live layer {i}", retain=True)
            (m.mount().upper / "seed").write_bytes(b"x" * 10_000)
            m.release()


async def measure(root: Path, writes: int, live_test: bool) -> dict[str, float]:
    from cachetui.app import CacheTuiApp
    from cachetui.core import CacheManager, ChangeSet

    figures: dict[str, float] = {}
    started = time.perf_counter()
    cpu_started = time.process_time()
    app = CacheTuiApp(root, live=live_test, preload=True)
    async with app.run_test(size=(140, 40)) as pilot:
        while not (app.loaded or app.load_error):
            await asyncio.sleep(0.005)
        await pilot.pause()
        figures["first_paint_s"] = time.perf_counter() - started
        # CPU seconds of the process (every thread) until then: on a loaded machine the
        # wall time grows with the load, this much less
        figures["first_paint_cpu_s"] = time.process_time() - cpu_started
        figures["records"] = len(app.service.view.rows) if app.service.view else 0
        if app.load_error:
            raise SystemExit(app.load_error)
        view = app.service.view
        assert view is not None

        # one row update: re-measure one record and patch its node, then repaint
        # the cheap read: iterating the values would build every record's value, which
        # the dashboard itself never does
        brief = getattr(view, "brief", view.rows.__getitem__)  # (older trees had no brief)
        live_ids = [i for i in view.rows if brief(i).description.startswith("live layer")]
        target = live_ids[0]
        app.ref_tree.select_id(target)
        await pilot.pause()
        # When did the tree last draw a line? (set by a wrapper around render_lines)
        drawn = [0.0]
        tree_type = type(app.ref_tree)
        original = tree_type.render_lines

        def render_lines(self, crop):  # type: ignore[no-untyped-def]
            result = original(self, crop)
            drawn[0] = time.perf_counter()
            return result

        tree_type.render_lines = render_lines  # type: ignore[method-assign]
        patch, total = [], []
        for i in range(15):
            (root / "snapshots" / target / f"row-{i}").write_bytes(b"y" * 8192)
            await pilot.pause()
            t0 = time.perf_counter()
            delta = app.service.apply(ChangeSet(frozenset({target})))
            app.ref_tree.apply_delta(delta)
            app.main._update_totals()
            patch.append(time.perf_counter() - t0)
            while drawn[0] < t0 and time.perf_counter() - t0 < 2:
                await asyncio.sleep(0.0005)
            total.append(drawn[0] - t0)
        tree_type.render_lines = original  # type: ignore[method-assign]
        figures["row_patch_ms_median"] = statistics.median(patch) * 1000
        figures["row_update_ms_median"] = statistics.median(total) * 1000
        figures["row_update_ms_max"] = max(total) * 1000

        if live_test:
            cm = CacheManager.open(root)
            ref = cm.get_mutable(live_ids[1])
            upper = ref.mount().upper
            assert upper is not None
            await asyncio.sleep(0.5)  # the watcher is up
            latencies = []
            for i in range(writes):
                before = app.service.view.rows[ref.id].size
                t0 = time.perf_counter()
                (upper / f"w-{i}").write_bytes(b"z" * 65536)
                deadline = t0 + 5
                while time.perf_counter() < deadline:
                    row = app.service.view.rows.get(ref.id)
                    node = app.ref_tree.nodes.get(ref.id)
                    if row is not None and row.size > before and node is not None:
                        break
                    await asyncio.sleep(0.002)
                await pilot.pause()
                latencies.append(time.perf_counter() - t0)
                await asyncio.sleep(0.05)
            figures["write_to_screen_s_median"] = statistics.median(latencies)
            figures["write_to_screen_s_max"] = max(latencies)
            ref.release()
            cm.close()
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def run_child(root: Path, writes: int, live_test: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--measure", str(root), "--writes", str(writes)]
    if not live_test:
        command.append("--no-live")
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=15)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-live", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        figures = asyncio.run(measure(args.measure, args.writes, not args.no_live))
        print(json.dumps(figures))
        return
    base = Path(tempfile.mkdtemp(prefix="cachetui-bench-"))
    try:
        for count, live_test in ((args.records, True), (args.big, False)):
            if not count:
                continue
            root = base / f"store-{count}"
            t0 = time.perf_counter()
            build(root, count)
            print(f"built {count:,} records in {time.perf_counter() - t0:.1f} s")
            load_before = os.getloadavg()[0]
            figures = run_child(root, args.writes, live_test)
            if live_test:  # first paint varies with the machine's load: best of three
                for _ in range(2):
                    again = run_child(root, 1, False)
                    for key in ("first_paint_s", "first_paint_cpu_s"):
                        figures[key] = min(figures[key], again[key])
            print(f"  records on screen       {int(figures['records']):,}")
            print(
                f"  first paint             {figures['first_paint_s']:.3f} s "
                "(records on screen, from App() to the first frame)"
            )
            print(f"  ... CPU time            {figures['first_paint_cpu_s']:.3f} s (all threads)")
            print(
                f"  one row update          {figures['row_patch_ms_median']:.1f} ms median "
                "(re-measure + patch the node + totals)"
            )
            print(
                f"  ... drawn on screen     {figures['row_update_ms_median']:.1f} ms median, "
                f"{figures['row_update_ms_max']:.1f} ms max (until the tree redraws the line)"
            )
            if "write_to_screen_s_median" in figures:
                print(
                    f"  file write -> screen    {figures['write_to_screen_s_median']:.3f} s "
                    f"median, {figures['write_to_screen_s_max']:.3f} s max"
                )
            print(f"  peak memory (RSS)       {figures['peak_rss_mb']:.0f} MB")
            after = os.getloadavg()[0]
            print(f"  load average            {load_before:.2f} before, {after:.2f} after")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
