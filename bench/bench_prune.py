"""Benchmark: pruning 10,000 unreferenced records against ``rm -rf`` of the same shape.

Each record is one layer directory holding one small file. The peer is ``rm -rf`` of a
directory with the same 10,000 subdirectories, timed in the same run. Goal (issue #3): at
most 1.5x rm's wall time.

    python bench/bench_prune.py [--records 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build_flat_store

from cachetui.core import CacheManager, PruneOptions


def build_plain_tree(root: Path, count: int, file_bytes: int) -> None:
    root.mkdir()
    for index in range(count):
        directory = root / f"d{index:06d}"
        directory.mkdir()
        with open(directory / "file", "wb") as fh:
            fh.write(b"f" * file_bytes)


def sync() -> None:
    os.sync()  # start each timing with no dirty pages from the build


def time_rm(tmp: Path, count: int, file_bytes: int) -> float:
    plain = tmp / "plain"
    build_plain_tree(plain, count, file_bytes)
    sync()
    started = time.perf_counter()
    subprocess.run(["rm", "-rf", str(plain)], check=True)
    return time.perf_counter() - started


def time_prune(tmp: Path, count: int, file_bytes: int) -> float:
    root = tmp / "store"
    build_flat_store(root, count, chain_length=1, file_bytes=file_bytes)
    cm = CacheManager.open(root)
    sync()
    started = time.perf_counter()
    removed = cm.prune(PruneOptions(all=True))
    elapsed = time.perf_counter() - started
    left = os.listdir(root / "snapshots")
    cm.close()
    shutil.rmtree(root)
    assert len(removed) == count and not left, (len(removed), len(left))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--file-bytes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of each")
    args = parser.parse_args()
    rm_times: list[float] = []
    prune_times: list[float] = []
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        for run in range(args.runs):
            # Alternate which goes first: the disk's state after one run favours the next.
            order = [time_rm, time_prune] if run % 2 == 0 else [time_prune, time_rm]
            for measure in order:
                elapsed = measure(Path(tmp), args.records, args.file_bytes)
                (rm_times if measure is time_rm else prune_times).append(elapsed)
    rm_med, prune_med = statistics.median(rm_times), statistics.median(prune_times)
    print(f"records: {args.records:,} (one {args.file_bytes}-byte file each), {args.runs} runs")
    print(f"rm -rf                    : median {rm_med:.3f} s  ({_spread(rm_times)})")
    print(
        f"CacheManager.prune(all)   : median {prune_med:.3f} s  ({_spread(prune_times)})"
        f"  {prune_med / rm_med:.2f}x rm -rf  goal <= 1.5x"
    )
    print(f"per record                : {prune_med / args.records * 1e6:.0f} us")


def _spread(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    main()
