"""Benchmark: ``cachetui.core.usage.measure`` against ``du -s --block-size=1``.

For each size (10,000 and 200,000 files by default), builds a tree shaped like an image
layer (nested directories of about 100 small files each) in a temporary directory, then
times ``du`` and ``measure()`` (best of N each, in the same run, warm cache), checks that
both report the same size, and prints the figures and the ratio. The goal is
``measure`` at most 1.2x the wall time of ``du`` at every size. ``measure`` runs as the
dashboard runs it: a large tree is shared with helper processes started by exec (never
forked), started once per process, so the warm-up call starts them. Beside the wall
times it prints the CPU time each used (``measure``'s over all its processes): on a busy
machine the wall ratio follows the load, the CPU figures much less.

    python bench/bench_measure.py [--files 10000 200000] [--repeat 5] [--workers N]
                                  [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cachetui.core import measurepool, usage
from cachetui.core.usage import measure

__all__ = ["build_tree", "main"]

FILES_PER_DIR = 100
DIRS_PER_DIR = 10


def build_tree(root: Path, files: int, *, seed: int = 1) -> int:
    """Create ``files`` small files under ``root``, ~100 per directory, nested 3 deep.

    Returns the number of directories created. Sizes follow a rough layer mix: most files
    under 4 KiB, some up to 64 KiB.
    """
    rng = random.Random(seed)
    leaf_dirs = max(1, -(-files // FILES_PER_DIR))
    blobs = [os.urandom(n) for n in (0, 100, 700, 2000, 3500, 9000, 30000, 65000)]
    weights = [5, 25, 25, 20, 12, 8, 4, 1]
    made = 0
    remaining = files
    for i in range(leaf_dirs):
        a, b, c = i // (DIRS_PER_DIR * DIRS_PER_DIR), (i // DIRS_PER_DIR) % DIRS_PER_DIR, i
        leaf = root / f"usr{a:03d}" / f"lib{b:02d}" / f"pkg{c:05d}"
        leaf.mkdir(parents=True, exist_ok=True)
        made += 1
        for j in range(min(FILES_PER_DIR, remaining)):
            data = rng.choices(blobs, weights)[0]
            with open(leaf / f"file{j:03d}.so", "wb") as fh:
                fh.write(data)
        remaining -= FILES_PER_DIR
    return made


def _helper_cpu() -> float:
    """CPU seconds used so far by measure's helper processes (from /proc)."""
    total = 0.0
    for helper in list(measurepool._helpers):
        try:
            fields = Path(f"/proc/{helper.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def time_du(root: Path) -> tuple[float, float, int]:
    """Wall time, CPU time and size of one ``du -s`` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(
        ["du", "-s", "--block-size=1", str(root)], check=True, capture_output=True, text=True
    ).stdout
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu, int(out.split()[0])


def time_measure(root: Path, workers: int | None) -> tuple[float, float, int]:
    """Wall time, CPU time (this process and the helpers) and size of one ``measure``."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    helpers_before = _helper_cpu()
    start = time.perf_counter()
    result = measure(root, workers=workers)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    cpu += _helper_cpu() - helpers_before
    if not result.complete:
        raise SystemExit(f"measure() incomplete: {result.findings[:3]}")
    return elapsed, cpu, result.size


GOAL = 1.2


class Figures(NamedTuple):
    du_wall: float  # best of the runs
    measure_wall: float
    du_cpu: float  # median of the runs
    measure_cpu: float
    agree: bool


def bench_one(root: Path, repeat: int, workers: int | None) -> Figures:
    """Best wall times and median CPU times of ``du`` and ``measure``, runs alternated so
    both see the same machine, and whether the sizes agree."""
    time_du(root)  # warm the dentry/inode caches once for both
    time_measure(root, workers)  # and start measure's helper processes, as a dashboard has
    measurepool.available((workers or usage._default_workers()) - 1, timeout=60)
    du_runs, m_runs = [], []
    for _ in range(repeat):
        du_runs.append(time_du(root))
        m_runs.append(time_measure(root, workers))
    sizes = {size for *_, size in du_runs} | {size for *_, size in m_runs}
    if len(sizes) != 1:
        print(f"SIZE MISMATCH: du and measure reported {sorted(sizes)}")
    return Figures(
        min(wall for wall, _, _ in du_runs),
        min(wall for wall, _, _ in m_runs),
        statistics.median(cpu for _, cpu, _ in du_runs),
        statistics.median(cpu for _, cpu, _ in m_runs),
        len(sizes) == 1,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="measure(workers=...)")
    parser.add_argument("--keep", type=Path, default=None, help="build in (or reuse) DIR/<files>")
    args = parser.parse_args(argv)

    print(f"cpus available : {len(os.sched_getaffinity(0))}")
    print(f"load average   : {' '.join(f'{x:.2f}' for x in os.getloadavg())} (before)")
    results: list[tuple[int, Figures]] = []
    for files in args.files:
        tmp = None
        if args.keep is not None:
            root = args.keep / str(files)
            if not root.exists():
                root.mkdir(parents=True)
                build_tree(root, files)
        else:
            tmp = tempfile.mkdtemp(prefix="bench-measure-")
            root = Path(tmp) / "layer"
            root.mkdir()
            t0 = time.perf_counter()
            dirs = build_tree(root, files)
            print(f"built {files} files in {dirs} leaf dirs in {time.perf_counter() - t0:.1f}s")
        try:
            figures = bench_one(root, args.repeat, args.workers)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        results.append((files, figures))
    print(f"load average   : {' '.join(f'{x:.2f}' for x in os.getloadavg())} (after)")
    print(
        f"{'files':>9}  {'du -s':>10}  {'measure()':>10}  {'ratio':>6}  "
        f"(goal <= {GOAL:.2f}x)  cpu: du, measure (all processes)"
    )
    for files, f in results:
        ratio = f.measure_wall / f.du_wall
        verdict = "ok  " if ratio <= GOAL else "MISS"
        print(
            f"{files:>9}  {f.du_wall * 1000:7.1f} ms  {f.measure_wall * 1000:7.1f} ms  "
            f"{ratio:5.2f}x  {verdict}               "
            f"{f.du_cpu * 1000:6.0f} ms, {f.measure_cpu * 1000:6.0f} ms"
        )
    print(
        "wall: best of the runs; cpu: median. On a busy machine the wall ratio follows the "
        "load; the cpu figures do not."
    )
    if not all(f.agree for _, f in results):
        return 1
    print("sizes agree")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
