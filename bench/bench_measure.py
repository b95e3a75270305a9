"""Benchmark: ``cachetui.core.usage.measure`` against ``du -s --block-size=1``.

Builds a tree shaped like an image layer (nested directories of about 100 small files
each) in a temporary directory, then times ``du`` and ``measure()`` (best of N each, in
the same run, warm cache), checks that both report the same size, and prints the figures
and the ratio. The goal is ``measure`` at most 1.5x the wall time of ``du``.

    python bench/bench_measure.py [--files 200000] [--repeat 3] [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def time_du(root: Path) -> tuple[float, int]:
    start = time.perf_counter()
    out = subprocess.run(
        ["du", "-s", "--block-size=1", str(root)], check=True, capture_output=True, text=True
    ).stdout
    return time.perf_counter() - start, int(out.split()[0])


def time_measure(root: Path, workers: int | None) -> tuple[float, int]:
    start = time.perf_counter()
    result = measure(root, workers=workers)
    elapsed = time.perf_counter() - start
    if not result.complete:
        raise SystemExit(f"measure() incomplete: {result.findings[:3]}")
    return elapsed, result.size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="measure(workers=...)")
    parser.add_argument("--keep", type=Path, default=None, help="build in (or reuse) this dir")
    args = parser.parse_args(argv)

    tmp = None
    if args.keep is not None:
        root = args.keep
        if not root.exists():
            root.mkdir(parents=True)
            build_tree(root, args.files)
    else:
        tmp = tempfile.mkdtemp(prefix="bench-measure-")
        root = Path(tmp) / "layer"
        root.mkdir()
        t0 = time.perf_counter()
        dirs = build_tree(root, args.files)
        print(f"built {args.files} files in {dirs} leaf dirs in {time.perf_counter() - t0:.1f}s")
    try:
        time_du(root)  # warm the dentry/inode caches once for both
        du_times, du_size = zip(*(time_du(root) for _ in range(args.repeat)), strict=True)
        m_times, m_size = zip(
            *(time_measure(root, args.workers) for _ in range(args.repeat)), strict=True
        )
        du_best, m_best = min(du_times), min(m_times)
        print(f"cpus available : {len(os.sched_getaffinity(0))}")
        print(f"du -s          : {du_best * 1000:8.1f} ms  size {du_size[0]}")
        print(f"measure()      : {m_best * 1000:8.1f} ms  size {m_size[0]}")
        print(f"ratio          : {m_best / du_best:8.2f}x  (goal <= 1.50x)")
        if len(set(du_size)) != 1 or set(du_size) != set(m_size):
            print(f"SIZE MISMATCH: du {sorted(set(du_size))} measure {sorted(set(m_size))}")
            return 1
        print("sizes agree")
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
