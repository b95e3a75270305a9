"""Benchmark: pruning 10,000 unreferenced records against ``rm -rf`` of the same shape.

Each record is one layer directory holding one small file. The peer is ``rm -rf`` of a
directory with the same 10,000 subdirectories, timed in the same run. Goal (issue #3): at
most 1.5x rm's wall time.

    python bench/bench_prune.py [--records 10000]
"""

from __future__ import annotations

import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--file-bytes", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        plain = Path(tmp) / "plain"
        build_plain_tree(plain, args.records, args.file_bytes)
        sync()
        started = time.perf_counter()
        subprocess.run(["rm", "-rf", str(plain)], check=True)
        rm_time = time.perf_counter() - started

        root = Path(tmp) / "store"
        build_flat_store(root, args.records, chain_length=1, file_bytes=args.file_bytes)
        cm = CacheManager.open(root)
        sync()
        started = time.perf_counter()
        removed = cm.prune(PruneOptions(all=True))
        prune_time = time.perf_counter() - started
        left = os.listdir(root / "snapshots")
        cm.close()
    assert len(removed) == args.records and not left, (len(removed), len(left))
    print(f"records: {args.records:,} (one {args.file_bytes}-byte file each)")
    print(f"rm -rf                    : {rm_time:.3f} s")
    print(
        f"CacheManager.prune(all)   : {prune_time:.3f} s  ({prune_time / rm_time:.2f}x rm -rf)"
        "  goal <= 1.5x"
    )
    print(f"per record                : {prune_time / args.records * 1e6:.0f} us")


if __name__ == "__main__":
    main()
